// SPDX-License-Identifier: MIT
// CAF 0.17 peer for the isola benchmarks (see bench/README.md).
//
// Actors are event-based CAF actors (function-based, some with state) run
// by the default work-stealing scheduler with scheduler.max-threads set to
// the number of cores (CAF 0.17's default is max(4, cores)). The main
// thread drives each benchmark through a scoped_actor. Every benchmark
// prints lines "caf <bench> <metric> <value> <unit>", checks its own result
// and exits with status 1 if the check fails, and ends with the process's
// peak RSS, "peak_rss_kb" (VmHWM).
//
// Build: g++ -O2 -std=c++17 caf_bench.cpp -lcaf_core -lpthread -o caf-bench
// Usage: caf-bench BENCH ARGS..., one of: pingpong N, ring P T, spawn N,
//        fanin P M, skynet SIZE DIV, payload S N, pairs K N, crossworker N,
//        hog N H, idle1m N, kill N, timers T I.

#include <caf/all.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace caf;

using clk = std::chrono::steady_clock;

using started_atom = atom_constant<atom("started")>;
using stop_atom = atom_constant<atom("stop")>;
using bye_atom = atom_constant<atom("bye")>;
using zero_atom = atom_constant<atom("zero")>;
using hops_atom = atom_constant<atom("hops")>;
using next_atom = atom_constant<atom("next")>;
using done_atom = atom_constant<atom("done")>;
using go_atom = atom_constant<atom("go")>;
using tick_atom = atom_constant<atom("tick")>;

namespace {

int64_t ns_since(clk::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now() - t0)
    .count();
}

void report(const char* bench, const char* metric, double v, const char* unit) {
  std::printf("caf %s %s %.3f %s\n", bench, metric, v, unit);
  std::fflush(stdout);
}

// Any failed check ends the process at once with status 1 (from any thread).
[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "caf: CHECK FAILED: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

void check(bool ok, const std::string& what) {
  if (!ok)
    fail(what);
}

// A field of /proc/self/status (VmRSS:, VmHWM:), in KiB.
int64_t status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, 6, field) == 0)
      return std::strtoll(line.c_str() + 6, nullptr, 10);
  fail(std::string("no ") + field + " in /proc/self/status");
}

// rss_after_drain_kb, the same rule in every system: VmRSS (KiB) once it
// has not changed for 500 ms, read every 10 ms from the end of the drain, at
// most 5 s.
int64_t settled_rss_kb() {
  int64_t last = status_kb("VmRSS:");
  for (int i = 0, same = 0; i < 500 && same < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    int64_t now = status_kb("VmRSS:");
    same = now == last ? same + 1 : 0;
    last = now;
  }
  return last;
}

// VmRSS of this process, in bytes.
int64_t rss_bytes() {
  return status_kb("VmRSS:") * 1024;
}

// ---------------------------------------------------------------- pingpong
// pong replies to whoever sent the int (the "port it got"), via CAF's
// current_sender(). ping counts down from N to 1, one round trip each.

behavior pong(event_based_actor* self) {
  return {
    [=](int64_t n) {
      self->send(actor_cast<actor>(self->current_sender()), n);
    },
    [=](stop_atom) { self->quit(); },
  };
}

struct ping_state {
  int64_t expect = 0;   // the int we are waiting to get back
  int64_t rounds = 0;   // completed round trips
  clk::time_point t0;
};

behavior ping(stateful_actor<ping_state>* self, actor pong_a, int64_t n,
              actor driver) {
  self->state.expect = n;
  self->state.t0 = clk::now();
  self->send(pong_a, n);
  return {
    [=](int64_t x) {
      auto& st = self->state;
      check(x == st.expect, "pingpong: wrong value back");
      ++st.rounds;
      if (x == 1) {
        self->send(driver, done_atom::value, ns_since(st.t0), st.rounds);
        self->send(pong_a, stop_atom::value);
        self->quit();
        return;
      }
      st.expect = x - 1;
      self->send(pong_a, st.expect);
    },
  };
}

void bench_pingpong(actor_system& sys, int64_t n) {
  check(n >= 1, "pingpong: N >= 1");
  scoped_actor drv{sys};
  auto p = sys.spawn(pong);
  sys.spawn(ping, p, n, actor{drv});
  drv->receive([&](done_atom, int64_t ns, int64_t rounds) {
    check(rounds == n, "pingpong: round-trip count");
    report("pingpong", "ns_per_roundtrip", double(ns) / n, "ns");
  });
}

// -------------------------------------------------------------------- ring

struct ring_state {
  actor next;
  int64_t hops = 0;
};

behavior ring_member(stateful_actor<ring_state>* self, actor driver,
                     int64_t idx) {
  return {
    [=](next_atom, actor nxt) { self->state.next = std::move(nxt); },
    [=](int64_t tok) {
      if (tok == 0) {
        self->send(driver, zero_atom::value, idx);
        return;
      }
      self->send(self->state.next, tok - 1);
      ++self->state.hops;
    },
    [=](stop_atom) {
      self->send(driver, hops_atom::value, self->state.hops);
      self->state.next = nullptr; // break the reference cycle
      self->quit();
    },
  };
}

void bench_ring(actor_system& sys, int64_t p, int64_t t) {
  check(p >= 2 && t >= 1, "ring: P >= 2 and T >= 1");
  scoped_actor drv{sys};
  std::vector<actor> members;
  for (int64_t i = 0; i < p; ++i)
    members.push_back(sys.spawn(ring_member, actor{drv}, i));
  for (int64_t i = 0; i < p; ++i)
    drv->send(members[i], next_atom::value, members[(i + 1) % p]);
  // Messages from one sender arrive in order, so every member has its next
  // before the token can reach it.
  auto t0 = clk::now();
  drv->send(members[0], t);
  int64_t last = -1;
  drv->receive([&](zero_atom, int64_t idx) { last = idx; });
  auto ns = ns_since(t0);
  for (auto& m : members)
    drv->send(m, stop_atom::value);
  int64_t total = 0;
  for (int64_t i = 0; i < p; ++i)
    drv->receive([&](hops_atom, int64_t h) { total += h; });
  check(total == t && last == t % p, "ring: hop count or last member");
  report("ring", "ns_per_hop", double(ns) / t, "ns");
}

// ------------------------------------------------------------------- spawn
// Each actor confirms it started, then waits for stop, answers and quits.

behavior idle(event_based_actor* self, actor driver, int64_t idx) {
  self->send(driver, started_atom::value);
  return {
    [=](stop_atom) {
      self->send(driver, bye_atom::value, idx);
      self->quit();
    },
  };
}

void bench_spawn(actor_system& sys, const char* name, int64_t n) {
  check(n >= 1, "spawn: N >= 1");
  scoped_actor drv{sys};
  std::vector<actor> actors;
  actors.reserve(n);
  // Running (non-hidden) actors before we start; the system may own some.
  auto baseline = sys.registry().running();
  auto rss0 = rss_bytes();
  auto t0 = clk::now();
  for (int64_t i = 0; i < n; ++i)
    actors.push_back(sys.spawn(idle, actor{drv}, i));
  for (int64_t i = 0; i < n; ++i)
    drv->receive([](started_atom) {});
  auto spawn_ns = ns_since(t0);
  auto rss1 = rss_bytes();
  t0 = clk::now();
  for (auto& a : actors)
    drv->send(a, stop_atom::value);
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i)
    drv->receive([&](bye_atom, int64_t idx) { sum += idx; });
  actors.clear(); // drop our handles
  // wait until every idle actor has terminated (running count is back)
  sys.registry().await_running_count_equal(baseline);
  auto stop_ns = ns_since(t0);
  check(sum == n * (n - 1) / 2, "spawn: answers");
  report(name, "ns_per_spawn", double(spawn_ns) / n, "ns");
  report(name, "bytes_per_idle", double(rss1 - rss0) / n, "B");
  report(name, "ns_per_stop", double(stop_ns) / n, "ns");
}

// ------------------------------------------------------------------- fanin

struct consumer_state {
  int64_t count = 0;
  int64_t sum = 0;
};

behavior consumer(stateful_actor<consumer_state>* self, actor driver,
                  int64_t total) {
  return {
    [=](int64_t x) {
      auto& st = self->state;
      st.sum += x;
      if (++st.count == total) {
        self->send(driver, done_atom::value, st.count, st.sum);
        self->quit();
      }
    },
  };
}

// A producer sends its M ints as soon as it runs, then ends.
void producer(event_based_actor* self, actor cons, int64_t m) {
  for (int64_t i = 1; i <= m; ++i)
    self->send(cons, i);
  self->quit();
}

void bench_fanin(actor_system& sys, int64_t p, int64_t m) {
  check(p >= 1 && m >= 1, "fanin: P >= 1 and M >= 1");
  scoped_actor drv{sys};
  auto cons = sys.spawn(consumer, actor{drv}, p * m);
  auto t0 = clk::now();
  for (int64_t j = 0; j < p; ++j)
    sys.spawn(producer, cons, m);
  drv->receive([&](done_atom, int64_t count, int64_t sum) {
    auto ns = ns_since(t0);
    check(count == p * m && sum == p * (m * (m + 1) / 2), "fanin: count/sum");
    report("fanin", "msgs_per_s", double(p * m) / (ns / 1e9), "msg/s");
    report("fanin", "rss_after_drain_kb", double(settled_rss_kb()), "kB");
  });
}

// ------------------------------------------------------------------ skynet

struct sky_state {
  int64_t pending = 0;
  int64_t sum = 0;
};

behavior sky(stateful_actor<sky_state>* self, actor parent, int64_t num,
             int64_t size, int64_t div) {
  if (size == 1) { // a leaf answers its number and ends
    self->send(parent, num);
    self->quit();
    return {};
  }
  auto sub = size / div;
  auto me = actor_cast<actor>(self);
  for (int64_t i = 0; i < div; ++i)
    self->spawn(sky, me, num + i * sub, sub, div);
  self->state.pending = div;
  return {
    [=](int64_t x) {
      auto& st = self->state;
      st.sum += x;
      if (--st.pending == 0) {
        self->send(parent, st.sum);
        self->quit();
      }
    },
  };
}

void bench_skynet(actor_system& sys, int64_t size, int64_t div) {
  check(div >= 2, "skynet: DIV >= 2");
  for (auto s = size; s > 1; s /= div)
    check(s % div == 0, "skynet: SIZE must be a power of DIV");
  scoped_actor drv{sys};
  auto t0 = clk::now();
  sys.spawn(sky, actor{drv}, int64_t{0}, size, div);
  drv->receive([&](int64_t sum) {
    auto ns = ns_since(t0);
    check(sum == size * (size - 1) / 2, "skynet: sum");
    std::printf("caf skynet sum %" PRId64 " sum\n", sum);
    report("skynet", "ms_total", ns / 1e6, "ms");
  });
}

// ----------------------------------------------------------------- payload
// The buffer is a std::vector<char> (a CAF built-in message type). CAF
// messages are copy-on-write: a handler taking a non-const reference to an
// unshared message gets the vector in place, so std::move-ing it into the
// next send hands over the same heap block ("transfer"; checked by
// comparing data pointers). "copy" builds a new vector from the bytes
// before every send.

using buf_t = std::vector<char>;

inline char pat(size_t i) { return char(i * 7 + (i >> 8)); }

void probe(const buf_t& b, size_t s, int64_t k) {
  check(b.size() == s, "payload: size");
  size_t j = size_t(k * 4099) % s;
  check(b[j] == pat(j), "payload: corrupted byte");
}

buf_t prepare(buf_t& b, bool copy) {
  return copy ? buf_t(b.begin(), b.end()) : std::move(b);
}

// B: echo every buffer back to its sender, n times, then end.
behavior echo(stateful_actor<int64_t>* self, size_t s, int64_t n, bool copy) {
  return {
    [=](buf_t& b) {
      probe(b, s, self->state);
      self->send(actor_cast<actor>(self->current_sender()), prepare(b, copy));
      if (++self->state == n)
        self->quit();
    },
  };
}

struct bounce_state {
  int64_t k = 0;
  const char* orig = nullptr;
  clk::time_point t0;
};

// A: send the first buffer, then bounce it n times, report elapsed ns.
behavior bounce(stateful_actor<bounce_state>* self, actor b_a, size_t s,
                int64_t n, bool copy, actor driver) {
  buf_t first(s);
  for (size_t i = 0; i < s; ++i)
    first[i] = pat(i);
  self->state.orig = first.data();
  self->state.t0 = clk::now();
  self->send(b_a, prepare(first, copy));
  return {
    [=](buf_t& b) {
      auto& st = self->state;
      probe(b, s, st.k);
      if (++st.k == n) {
        auto ns = ns_since(st.t0);
        for (size_t i = 0; i < s; ++i)
          check(b[i] == pat(i), "payload: final buffer differs");
        check((b.data() == st.orig) == !copy,
              copy ? "payload: copy came back as the original"
                   : "payload: transfer did not keep the buffer");
        self->send(driver, done_atom::value, ns);
        self->quit();
        return;
      }
      self->send(b_a, prepare(b, copy));
    },
  };
}

int64_t payload_run(actor_system& sys, size_t s, int64_t n, bool copy) {
  scoped_actor drv{sys};
  auto b = sys.spawn(echo, s, n, copy);
  sys.spawn(bounce, b, s, n, copy, actor{drv});
  int64_t ns = 0;
  drv->receive([&](done_atom, int64_t x) { ns = x; });
  return ns;
}

void bench_payload(actor_system& sys, int64_t s, int64_t n) {
  check(s >= 1 && n >= 1, "payload: S >= 1 and N >= 1");
  // Copy: n round trips (2n sends); transfer: 50n round trips (100n
  // sends), as in every system, so that the run is long enough to time.
  auto tc = payload_run(sys, size_t(s), n, true);
  auto tt = payload_run(sys, size_t(s), 50 * n, false);
  report("payload", "copy_gbps", double(s) * 2.0 * n / (tc / 1e9) / 1e9, "GB/s");
  report("payload", "transfer_ns", tt / (100.0 * n), "ns");
}

// ------------------------------------------------------------ second round
// Round-trip times in ns go to a slice of one vector per run (each pinger
// writes its own slice; the driver reads after every pinger said done).
// quantile = the value at index floor(p * n) of the sorted samples, the
// same rule in every system.

double quantile(const std::vector<uint32_t>& s, double p) {
  size_t i = size_t(p * double(s.size()));
  return double(s[std::min(i, s.size() - 1)]);
}

uint32_t clamp_ns(int64_t ns) {
  return ns < 0 ? 0u : ns > int64_t(UINT32_MAX) ? UINT32_MAX : uint32_t(ns);
}

struct tping_state {
  int64_t k = 0;
  clk::time_point t0;
};

// A timed pinger: on go, n round trips with pong_a, each timed into lat.
behavior tping(stateful_actor<tping_state>* self, actor pong_a, int64_t n,
               uint32_t* lat, actor driver) {
  return {
    [=](go_atom) {
      self->state.t0 = clk::now();
      self->send(pong_a, n);
    },
    [=](int64_t x) {
      auto& st = self->state;
      auto t = clk::now();
      check(x == n - st.k, "pair: wrong value back");
      lat[st.k] = clamp_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(
                             t - st.t0).count());
      st.t0 = t;
      if (++st.k < n) {
        self->send(pong_a, x - 1);
        return;
      }
      self->send(driver, done_atom::value, st.k);
      self->send(pong_a, stop_atom::value);
      self->quit();
    },
  };
}

void report_latency(const char* bench, std::vector<uint32_t>& lat) {
  std::sort(lat.begin(), lat.end());
  report(bench, "p50_ns", quantile(lat, 0.5), "ns");
  report(bench, "p99_ns", quantile(lat, 0.99), "ns");
  report(bench, "p999_ns", quantile(lat, 0.999), "ns");
}

void bench_pairs(actor_system& sys, int64_t k, int64_t n) {
  check(k >= 1 && n >= 1, "pairs: K >= 1 and N >= 1");
  scoped_actor drv{sys};
  std::vector<uint32_t> lat(static_cast<size_t>(k * n));
  std::vector<actor> pings;
  for (int64_t i = 0; i < k; ++i)
    pings.push_back(sys.spawn(tping, sys.spawn(pong), n, &lat[size_t(i * n)],
                              actor{drv}));
  auto t0 = clk::now();
  for (auto& p : pings)
    drv->send(p, go_atom::value);
  int64_t total = 0;
  for (int64_t i = 0; i < k; ++i)
    drv->receive([&](done_atom, int64_t r) { total += r; });
  auto ns = ns_since(t0);
  check(total == k * n, "pairs: round trips");
  report("pairs", "msgs_per_s", 2.0 * double(k * n) / (ns / 1e9), "msg/s");
  report_latency("pairs", lat);
}

// Both ends detached: each runs on a thread of its own, so every hop
// crosses threads (CAF's way to pin an actor).
void bench_crossworker(actor_system& sys, int64_t n) {
  check(n >= 1, "crossworker: N >= 1");
  scoped_actor drv{sys};
  std::vector<uint32_t> lat(static_cast<size_t>(n));
  auto pg = sys.spawn<detached>(pong);
  auto p = sys.spawn<detached>(tping, pg, n, lat.data(), actor{drv});
  drv->send(p, go_atom::value);
  drv->receive([&](done_atom, int64_t r) { check(r == n, "crossworker"); });
  report_latency("crossworker", lat);
}

// The hog computes for h ms in one handler: CAF cannot preempt it, so it
// holds one scheduler thread that long.
behavior hog_actor(event_based_actor* self, int64_t h, actor driver) {
  return {
    [=](go_atom) {
      auto end = clk::now() + std::chrono::milliseconds(h);
      volatile uint64_t x = 1;
      int64_t turns = 0;
      while (clk::now() < end) {
        for (int i = 0; i < 100; ++i)
          x = x * 6364136223846793005u + 1;
        ++turns;
      }
      self->send(driver, done_atom::value, -turns);
      self->quit();
    },
  };
}

void bench_hog(actor_system& sys, int64_t n, int64_t h) {
  check(n >= 1, "hog: N >= 1");
  scoped_actor drv{sys};
  std::vector<uint32_t> lat(static_cast<size_t>(n));
  auto hg = sys.spawn(hog_actor, h, actor{drv});
  auto p = sys.spawn(tping, sys.spawn(pong), n, lat.data(), actor{drv});
  drv->send(hg, go_atom::value);
  drv->send(p, go_atom::value);
  int64_t rounds = 0, turns = 0;
  for (int i = 0; i < 2; ++i)
    drv->receive([&](done_atom, int64_t r) { (r < 0 ? turns : rounds) = r; });
  check(rounds == n && turns < 0, "hog: round trips");
  std::sort(lat.begin(), lat.end());
  report("hog", "p99_ns", quantile(lat, 0.99), "ns");
  report("hog", "max_ns", double(lat.back()), "ns");
}

// A handler cannot be interrupted, so the busy actor computes in slices
// of 100 steps, each a message to itself: the kill (an exit message) is
// taken between two slices.
behavior busy(event_based_actor* self, actor driver) {
  self->send(driver, started_atom::value);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      volatile uint64_t x = 1;
      for (int i = 0; i < 100; ++i)
        x = x * 6364136223846793005u + 1;
      self->send(self, tick_atom::value);
    },
  };
}

behavior kidle(event_based_actor* self, actor driver) {
  self->send(driver, started_atom::value);
  return {
    [=](stop_atom) { self->quit(); },
  };
}

void bench_kill(actor_system& sys, int64_t n) {
  check(n >= 1, "kill: N >= 1");
  scoped_actor drv{sys};
  std::vector<actor> actors;
  actors.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i)
    actors.push_back(sys.spawn(kidle, actor{drv}));
  for (int64_t i = 0; i < n; ++i)
    drv->receive([](started_atom) {});
  for (auto& a : actors)
    drv->monitor(a);
  auto t0 = clk::now();
  for (auto& a : actors)
    anon_send_exit(a, exit_reason::kill);
  for (int64_t i = 0; i < n; ++i)
    drv->receive([](const down_msg&) {});
  auto kill_ns = ns_since(t0);
  actors.clear();
  auto b = sys.spawn(busy, actor{drv});
  drv->monitor(b);
  drv->receive([](started_atom) {});
  auto t1 = clk::now();
  anon_send_exit(b, exit_reason::kill);
  drv->receive([](const down_msg&) {});
  auto busy_ns = ns_since(t1);
  report("kill", "ns_per_kill", double(kill_ns) / n, "ns");
  report("kill", "busy_kill_us", double(busy_ns) / 1e3, "us");
}

// Actor i of is starts per = t/is one-shot timers (delayed_send to
// itself), timer j with a delay of (i*per + j) mod 11 ms, and counts them.
behavior tset(stateful_actor<int64_t>* self, int64_t i, int64_t per,
              actor driver) {
  self->state = 0;
  for (int64_t j = 0; j < per; ++j)
    self->delayed_send(self, std::chrono::milliseconds((i * per + j) % 11),
                       tick_atom::value);
  return {
    [=](tick_atom) {
      if (++self->state < per)
        return;
      self->send(driver, done_atom::value, self->state);
      self->quit();
    },
  };
}

void bench_timers(actor_system& sys, int64_t t, int64_t is) {
  check(is >= 1 && t >= is && t % is == 0, "timers: T >= I >= 1, I divides T");
  scoped_actor drv{sys};
  int64_t per = t / is, total = 0;
  auto t0 = clk::now();
  for (int64_t i = 0; i < is; ++i)
    sys.spawn(tset, i, per, actor{drv});
  for (int64_t i = 0; i < is; ++i)
    drv->receive([&](done_atom, int64_t f) { total += f; });
  auto ns = ns_since(t0);
  check(total == t, "timers: firings");
  report("timers", "timers_per_s", double(t) / (ns / 1e9), "timer/s");
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: caf-bench pingpong N | ring P T | spawn N | "
                       "fanin P M | skynet SIZE DIV | payload S N | pairs K N |"
                       " crossworker N | hog N H | idle1m N | kill N | "
                       "timers T I\n");
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    usage();
  std::string bench = argv[1];
  std::vector<int64_t> a;
  for (int i = 2; i < argc; ++i) {
    char* end = nullptr;
    long long v = std::strtoll(argv[i], &end, 10);
    if (*end != '\0' || v < 0)
      usage();
    a.push_back(v);
  }
  auto need = [&](size_t k) {
    if (a.size() != k)
      usage();
  };
  actor_system_config cfg; // work stealing
  // One scheduler thread per core, as every system runs (CAF 0.17's
  // default is max(4, cores)).
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  cfg.set("scheduler.max-threads", size_t(cores > 0 ? cores : 1));
  actor_system sys{cfg};
  if (bench == "pingpong") {
    need(1);
    bench_pingpong(sys, a[0]);
  } else if (bench == "ring") {
    need(2);
    bench_ring(sys, a[0], a[1]);
  } else if (bench == "spawn") {
    need(1);
    bench_spawn(sys, "spawn", a[0]);
  } else if (bench == "idle1m") {
    need(1);
    bench_spawn(sys, "idle1m", a[0]);
  } else if (bench == "pairs") {
    need(2);
    bench_pairs(sys, a[0], a[1]);
  } else if (bench == "crossworker") {
    need(1);
    bench_crossworker(sys, a[0]);
  } else if (bench == "hog") {
    need(2);
    bench_hog(sys, a[0], a[1]);
  } else if (bench == "kill") {
    need(1);
    bench_kill(sys, a[0]);
  } else if (bench == "timers") {
    need(2);
    bench_timers(sys, a[0], a[1]);
  } else if (bench == "fanin") {
    need(2);
    bench_fanin(sys, a[0], a[1]);
  } else if (bench == "skynet") {
    need(2);
    bench_skynet(sys, a[0], a[1]);
  } else if (bench == "payload") {
    need(2);
    bench_payload(sys, a[0], a[1]);
  } else {
    usage();
  }
  report(bench.c_str(), "peak_rss_kb", double(status_kb("VmHWM:")), "kB");
  return 0;
}
