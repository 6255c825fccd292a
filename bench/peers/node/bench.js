// SPDX-License-Identifier: MIT
'use strict';
// Node.js peer for the isola benchmarks (see bench/README.md).
//
// Actors are worker_threads Workers (each its own V8 isolate and event loop);
// messages go through MessagePorts with postMessage (structured clone). The
// main thread drives each benchmark. Every benchmark prints lines
// "node <bench> <metric> <value> <unit>" plus a "# node ..." comment line with
// the sizes used, checks its own result and exits with status 1 if a check
// fails (a failed check in a worker is thrown and reaches the main thread).
//
// Usage: node bench.js BENCH ARGS..., one of: pingpong N, ring P T, spawn N,
//        fanin P M, skynet SIZE DIV, payload S N, pairs K N, crossworker N,
//        hog N H, idle1m N, kill N, timers T I.
// Spawning a Worker costs tens of milliseconds, so bench/run runs spawn,
// ring, skynet, pairs, idle1m, kill and timers here at reduced sizes (see
// bench/README.md). Every run ends with the process's peak RSS,
// "peak_rss_kb" (VmHWM).

const { Worker, MessageChannel, isMainThread, parentPort, workerData } =
  require('worker_threads');
const fs = require('fs');

const nowNs = () => process.hrtime.bigint();
const msSince = (t0) => Number(nowNs() - t0) / 1e6;
const nsSince = (t0) => Number(nowNs() - t0);

function report(bench, metric, value, unit) {
  console.log(`node ${bench} ${metric} ${value.toFixed(3)} ${unit}`);
}

// In the main thread a failed check exits at once; in a worker it throws,
// which ends the worker with an 'error' event that the main thread turns
// into a failure.
function check(ok, what) {
  if (ok) return;
  if (isMainThread) {
    console.error(`node: CHECK FAILED: ${what}`);
    process.exit(1);
  }
  throw new Error(`CHECK FAILED: ${what}`);
}

// A field of /proc/self/status (VmRSS, VmHWM), in KiB.
function statusKB(field) {
  const m = new RegExp(`${field}:\\s+(\\d+)\\s+kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  check(m !== null, `no ${field} in /proc/self/status`);
  return Number(m[1]);
}

// rss_after_drain_kb, the same rule in every system: VmRSS (KiB) once it
// has not changed for 500 ms, read every 10 ms from the end of the drain, at
// most 5 s.
async function settledRssKB() {
  let last = statusKB('VmRSS');
  for (let i = 0, same = 0; i < 500 && same < 50; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const now = statusKB('VmRSS');
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

// VmRSS of this process, in bytes.
function rssBytes() { return statusKB('VmRSS') * 1024; }

// Start a worker running this file in `role`. Any error in it is fatal.
function spawn(role, data = {}, transferList = []) {
  const w = new Worker(__filename, { workerData: { role, ...data }, transferList });
  w.on('error', (e) => {
    if (isMainThread) check(false, `${role} worker: ${e && e.message}`);
    else throw e;
  });
  return w;
}

// Resolve with the next message from a worker or port.
const nextMessage = (p) => new Promise((resolve) => p.once('message', resolve));

// Byte pattern used by payload, so corruption is visible.
const pat = (i) => (i * 7 + (i >> 8)) & 255;

function probe(u8, s, k) {
  check(u8.byteLength === s, `payload: size ${u8.byteLength}, want ${s}`);
  const j = (k * 4099) % s;
  check(u8[j] === pat(j), `payload: corrupted byte ${j}`);
}

// ======================================================= worker-side roles

const clampNs = (ns) => (ns > 0xffffffff ? 0xffffffff : ns);

const roles = {
  // A timed pinger: on 'go', n round trips with the pong on port, each timed
  // into a Uint32Array that goes back to the main thread (transferred).
  tping({ port, n }) {
    parentPort.once('message', () => {
      const lat = new Uint32Array(n);
      let k = 0;
      let t0 = nowNs();
      port.on('message', (x) => {
        const t = nowNs();
        check(x === n - k, `pair: got ${x}, want ${n - k}`);
        lat[k] = clampNs(Number(t - t0));
        t0 = t;
        if (++k < n) { port.postMessage(x - 1); return; }
        port.postMessage(0); // stop pong; its answer is ignored
        port.close();
        parentPort.postMessage(lat, [lat.buffer]);
      });
      port.postMessage(n);
    });
    parentPort.postMessage('ready');
  },

  // hog: on 'go', compute for h ms in one loop, then report.
  hog({ h }) {
    parentPort.once('message', () => {
      const end = nowNs() + BigInt(h) * 1000000n;
      let x = 1; let turns = 0;
      while (nowNs() < end) {
        for (let i = 0; i < 100; i++) x = (x * 1103515245 + 12345) & 0x7fffffff;
        turns++;
      }
      parentPort.postMessage({ turns, x });
    });
    parentPort.postMessage('ready');
  },

  // kill: an idle worker waits; a busy one computes for ever.
  kidle() { parentPort.on('message', () => {}); parentPort.postMessage('ready'); },
  kbusy() {
    parentPort.postMessage('ready');
    let x = 1;
    for (;;) x = (x * 1103515245 + 12345) & 0x7fffffff;
  },

  // timers: per one-shot setTimeouts, timer j with a delay of
  // (i*per + j) mod 11 ms; reports the count once all have fired.
  tset({ i, per }) {
    let fired = 0;
    for (let j = 0; j < per; j++) {
      setTimeout(() => {
        if (++fired === per) { parentPort.postMessage(fired); parentPort.close(); }
      }, (i * per + j) % 11);
    }
  },

  // pingpong: reply with the same int on the port it came from.
  pong({ port }) {
    port.on('message', (n) => {
      port.postMessage(n);
      if (n === 0) port.close();
    });
    parentPort.postMessage('ready');
  },

  // pingpong: on 'go' run n round trips counting down from n, then stop pong.
  ping({ port, n }) {
    parentPort.once('message', () => {
      let expect = n;
      let rounds = 0;
      const t0 = nowNs();
      port.on('message', (x) => {
        check(x === expect, `pingpong: got ${x}, want ${expect}`);
        if (x === 0) { port.close(); return; }
        rounds++;
        if (x === 1) {
          parentPort.postMessage({ ns: nsSince(t0), rounds });
          expect = 0;
          port.postMessage(0); // stop pong
          return;
        }
        expect = x - 1;
        port.postMessage(expect);
      });
      port.postMessage(n);
    });
    parentPort.postMessage('ready');
  },

  // ring member: forward token-1 to the next member; report who sees 0.
  ringMember({ idx, inPort, outPort }) {
    let hops = 0;
    const onToken = (tok) => {
      if (tok === 0) { parentPort.postMessage({ zero: idx }); return; }
      outPort.postMessage(tok - 1);
      hops++;
    };
    inPort.on('message', onToken);
    parentPort.on('message', (m) => {
      if (m === 'stop') {
        parentPort.postMessage({ hops });
        inPort.close(); outPort.close(); parentPort.close();
      } else {
        onToken(m); // the first token comes from the main thread
      }
    });
    parentPort.postMessage('ready');
  },

  // spawn: confirm it started, wait for stop, answer, end.
  idle({ idx }) {
    parentPort.on('message', () => {
      parentPort.postMessage(idx);
      parentPort.close(); // nothing else keeps the worker alive: it ends
    });
    parentPort.postMessage('started');
  },

  // fanin: on 'go' send m ints to the consumer.
  producer({ port, m }) {
    parentPort.once('message', () => {
      for (let i = 1; i <= m; i++) port.postMessage(i);
      port.close();
      parentPort.close();
    });
    parentPort.postMessage('ready');
  },

  // fanin: count to total over all producer ports, then report.
  consumer({ ports, total }) {
    let count = 0;
    let sum = 0;
    const onInt = (x) => {
      sum += x;
      if (++count === total) {
        parentPort.postMessage({ count, sum });
        for (const p of ports) p.close();
      }
    };
    for (const p of ports) p.on('message', onInt);
    parentPort.postMessage('ready');
  },

  // skynet: a leaf answers its number; an inner node spawns div children
  // (nested workers) over its range and answers the sum of their answers.
  sky({ num, size, div }) {
    if (size === 1) { parentPort.postMessage(num); return; }
    const sub = size / div;
    let pending = div;
    let sum = 0;
    for (let i = 0; i < div; i++) {
      const child = spawn('sky', { num: num + i * sub, size: sub, div });
      child.once('message', (x) => {
        sum += x;
        if (--pending === 0) parentPort.postMessage(sum);
      });
    }
  },

  // payload B: echo every buffer back n times (copied or transferred).
  echo({ port, s, n, transfer }) {
    let k = 0;
    port.on('message', (u8) => {
      probe(u8, s, k);
      if (transfer) {
        port.postMessage(u8, [u8.buffer]);
        check(u8.byteLength === 0, 'payload: buffer not detached by transfer');
      } else {
        port.postMessage(u8);
      }
      if (++k === n) port.close();
    });
    parentPort.postMessage('ready');
  },

  // payload A: on 'go' send the buffer and bounce it n times.
  bounce({ port, s, n, transfer }) {
    parentPort.once('message', () => {
      let u8 = new Uint8Array(s);
      for (let i = 0; i < s; i++) u8[i] = pat(i);
      const send = (b) => {
        if (transfer) {
          port.postMessage(b, [b.buffer]);
          check(b.byteLength === 0, 'payload: buffer not detached by transfer');
        } else {
          port.postMessage(b); // structured clone: the bytes are copied
        }
      };
      let k = 0;
      const t0 = nowNs();
      port.on('message', (b) => {
        probe(b, s, k);
        if (++k === n) {
          const ns = nsSince(t0);
          for (let i = 0; i < s; i++) check(b[i] === pat(i), 'payload: final buffer differs');
          port.close();
          parentPort.postMessage({ ns });
          return;
        }
        send(b);
      });
      send(u8);
    });
    parentPort.postMessage('ready');
  },
};

// ===================================================== main-side benchmarks

async function pingpong(n) {
  check(n >= 1, 'pingpong: N >= 1');
  const { port1, port2 } = new MessageChannel();
  const pong = spawn('pong', { port: port2 }, [port2]);
  const ping = spawn('ping', { port: port1, n }, [port1]);
  await Promise.all([nextMessage(pong), nextMessage(ping)]);
  ping.postMessage('go');
  const r = await nextMessage(ping);
  check(r.rounds === n, `pingpong: ${r.rounds} round trips, want ${n}`);
  report('pingpong', 'ns_per_roundtrip', r.ns / n, 'ns');
}

async function ring(p, t) {
  check(p >= 2 && t >= 1, 'ring: P >= 2 and T >= 1');
  const chans = Array.from({ length: p }, () => new MessageChannel());
  const members = [];
  for (let i = 0; i < p; i++) {
    const inPort = chans[(i + p - 1) % p].port2; // from the previous member
    const outPort = chans[i].port1;              // to the next member
    members.push(spawn('ringMember', { idx: i, inPort, outPort }, [inPort, outPort]));
  }
  await Promise.all(members.map(nextMessage));
  const zero = new Promise((resolve) => {
    for (const w of members) w.once('message', resolve);
  });
  const t0 = nowNs();
  members[0].postMessage(t);
  const { zero: last } = await zero;
  const ns = nsSince(t0);
  for (const w of members) w.removeAllListeners('message');
  const hops = members.map((w) => nextMessage(w).then((m) => m.hops));
  for (const w of members) w.postMessage('stop');
  const total = (await Promise.all(hops)).reduce((a, b) => a + b, 0);
  check(total === t && last === t % p, `ring: ${total} hops, 0 seen by ${last}`);
  report('ring', 'ns_per_hop', ns / t, 'ns');
}

async function spawnBench(n, name = 'spawn') {
  check(n >= 1, 'spawn: N >= 1');
  const rss0 = rssBytes();
  let t0 = nowNs();
  const ws = [];
  for (let i = 0; i < n; i++) ws.push(spawn('idle', { idx: i }));
  await Promise.all(ws.map(nextMessage)); // every worker said 'started'
  const spawnNs = nsSince(t0);
  const rss1 = rssBytes();
  t0 = nowNs();
  const answers = ws.map(nextMessage);
  const exits = ws.map((w) => new Promise((resolve) => w.once('exit', resolve)));
  for (const w of ws) w.postMessage('stop');
  const sum = (await Promise.all(answers)).reduce((a, b) => a + b, 0);
  const codes = await Promise.all(exits);
  const stopNs = nsSince(t0);
  check(sum === n * (n - 1) / 2 && codes.every((c) => c === 0), 'spawn: answers/exits');
  report(name, 'ns_per_spawn', spawnNs / n, 'ns');
  report(name, 'bytes_per_idle', (rss1 - rss0) / n, 'B');
  report(name, 'ns_per_stop', stopNs / n, 'ns');
}

async function fanin(p, m) {
  check(p >= 1 && m >= 1, 'fanin: P >= 1 and M >= 1');
  const chans = Array.from({ length: p }, () => new MessageChannel());
  const ports = chans.map((c) => c.port2);
  const cons = spawn('consumer', { ports, total: p * m }, ports);
  const prods = chans.map((c) => spawn('producer', { port: c.port1, m }, [c.port1]));
  await Promise.all([cons, ...prods].map(nextMessage));
  const done = nextMessage(cons);
  const t0 = nowNs();
  for (const w of prods) w.postMessage('go');
  const r = await done;
  const ns = nsSince(t0);
  check(r.count === p * m && r.sum === p * m * (m + 1) / 2, `fanin: count ${r.count} sum ${r.sum}`);
  report('fanin', 'msgs_per_s', (p * m) / (ns / 1e9), 'msg/s');
  report('fanin', 'rss_after_drain_kb', await settledRssKB(), 'kB');
}

async function skynet(size, div) {
  check(div >= 2, 'skynet: DIV >= 2');
  for (let s = size; s > 1; s /= div) check(s % div === 0, 'skynet: SIZE must be a power of DIV');
  const t0 = nowNs();
  const sum = await nextMessage(spawn('sky', { num: 0, size, div }));
  const ms = msSince(t0);
  check(sum === size * (size - 1) / 2, `skynet: sum ${sum}`);
  console.log(`node skynet sum ${sum} sum`);
  report('skynet', 'ms_total', ms, 'ms');
}

async function payloadRun(s, n, transfer) {
  const { port1, port2 } = new MessageChannel();
  const b = spawn('echo', { port: port2, s, n, transfer }, [port2]);
  const a = spawn('bounce', { port: port1, s, n, transfer }, [port1]);
  await Promise.all([nextMessage(a), nextMessage(b)]);
  a.postMessage('go');
  const { ns } = await nextMessage(a);
  return ns;
}

async function payload(s, n) {
  check(s >= 1 && n >= 1, 'payload: S >= 1 and N >= 1');
  // Copy: n round trips (2n sends); transfer: 50n round trips (100n
  // sends), as in every system, so that the run is long enough to time.
  const tc = await payloadRun(s, n, false);
  const tt = await payloadRun(s, 50 * n, true);
  report('payload', 'copy_gbps', (s * 2 * n) / (tc / 1e9) / 1e9, 'GB/s');
  report('payload', 'transfer_ns', tt / (100 * n), 'ns');
}

// quantile = the value at index floor(p * n) of the sorted samples, the
// same rule in every system.
const quantile = (s, p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];

function reportLatency(bench, lat, which) {
  lat.sort();
  for (const [name, p] of which) report(bench, name, quantile(lat, p), 'ns');
}

// Starts k timed pairs (a pinger and a ponger Worker each); resolves with
// the pingers once all are ready.
async function startPairs(k, n) {
  const pings = [];
  const ready = [];
  for (let i = 0; i < k; i++) {
    const { port1, port2 } = new MessageChannel();
    const pong = spawn('pong', { port: port2 }, [port2]);
    const ping = spawn('tping', { port: port1, n }, [port1]);
    ready.push(nextMessage(pong), nextMessage(ping));
    pings.push(ping);
  }
  await Promise.all(ready);
  return pings;
}

async function pairs(k, n) {
  check(k >= 1 && n >= 1, 'pairs: K >= 1 and N >= 1');
  const pings = await startPairs(k, n);
  const done = pings.map(nextMessage);
  const t0 = nowNs();
  for (const p of pings) p.postMessage('go');
  const parts = await Promise.all(done);
  const ns = nsSince(t0);
  const lat = new Uint32Array(k * n);
  parts.forEach((part, i) => lat.set(part, i * n));
  report('pairs', 'msgs_per_s', (2 * k * n) / (ns / 1e9), 'msg/s');
  reportLatency('pairs', lat, [['p50_ns', 0.5], ['p99_ns', 0.99], ['p999_ns', 0.999]]);
}

// Every Worker is a thread of its own: the two ends always cross threads.
async function crossworker(n) {
  check(n >= 1, 'crossworker: N >= 1');
  const [ping] = await startPairs(1, n);
  const done = nextMessage(ping);
  ping.postMessage('go');
  reportLatency('crossworker', await done, [['p50_ns', 0.5], ['p99_ns', 0.99], ['p999_ns', 0.999]]);
}

async function hog(n, h) {
  check(n >= 1, 'hog: N >= 1');
  const hw = spawn('hog', { h });
  const hogReady = nextMessage(hw); // listen now: an unheard message is lost
  const [ping] = await startPairs(1, n);
  await hogReady;
  const done = [nextMessage(ping), nextMessage(hw)];
  hw.postMessage('go');
  ping.postMessage('go');
  const [lat, r] = await Promise.all(done);
  check(r.turns > 0, 'hog: the hog did not run');
  reportLatency('hog', lat, [['p99_ns', 0.99]]);
  report('hog', 'max_ns', lat[lat.length - 1], 'ns');
}

// worker.terminate() stops a Worker even while its JavaScript runs; the
// exit notice is the 'exit' event.
async function kill(n) {
  check(n >= 1, 'kill: N >= 1');
  const ws = [];
  for (let i = 0; i < n; i++) ws.push(spawn('kidle'));
  await Promise.all(ws.map(nextMessage));
  const exits = ws.map((w) => new Promise((resolve) => w.once('exit', resolve)));
  let t0 = nowNs();
  for (const w of ws) w.terminate();
  await Promise.all(exits);
  const killNs = nsSince(t0);
  const b = spawn('kbusy');
  await nextMessage(b);
  const exit = new Promise((resolve) => b.once('exit', resolve));
  t0 = nowNs();
  b.terminate();
  await exit;
  const busyNs = nsSince(t0);
  report('kill', 'ns_per_kill', killNs / n, 'ns');
  report('kill', 'busy_kill_us', busyNs / 1e3, 'us');
}

async function timers(t, is) {
  check(is >= 1 && t >= is && t % is === 0, 'timers: T >= I >= 1, I divides T');
  const per = t / is;
  const t0 = nowNs();
  const ws = [];
  for (let i = 0; i < is; i++) ws.push(spawn('tset', { i, per }));
  const total = (await Promise.all(ws.map(nextMessage))).reduce((a, b) => a + b, 0);
  const ns = nsSince(t0);
  check(total === t, `timers: ${total} fired, want ${t}`);
  report('timers', 'timers_per_s', t / (ns / 1e9), 'timer/s');
}

const benches = {
  pingpong: [1, pingpong], ring: [2, ring], spawn: [1, spawnBench],
  fanin: [2, fanin], skynet: [2, skynet], payload: [2, payload],
  pairs: [2, pairs], crossworker: [1, crossworker], hog: [2, hog],
  idle1m: [1, (n) => spawnBench(n, 'idle1m')], kill: [1, kill], timers: [2, timers],
};

async function main() {
  const [bench, ...rest] = process.argv.slice(2);
  const args = rest.map(Number);
  const entry = benches[bench];
  if (!entry || args.length !== entry[0] || !args.every((x) => Number.isInteger(x) && x >= 0)) {
    console.error('usage: node bench.js pingpong N | ring P T | spawn N | fanin P M | skynet SIZE DIV | payload S N' +
                  ' | pairs K N | crossworker N | hog N H | idle1m N | kill N | timers T I');
    process.exit(2);
  }
  console.log(`# node ${bench} ${rest.join(' ')}`);
  await entry[1](...args);
  report(bench, 'peak_rss_kb', statusKB('VmHWM'), 'kB');
  process.exit(0); // do not wait for lingering workers
}

if (isMainThread) {
  main().catch((e) => { console.error(`node: FAILED: ${e && e.stack}`); process.exit(1); });
} else {
  roles[workerData.role](workerData);
}
