// SPDX-License-Identifier: MIT
// Go peer for the isola benchmarks (see bench/README.md and BENCHMARKS.md).
//
// Actors are goroutines; an actor's mailbox is a buffered channel. Every
// benchmark prints lines "go <bench> <metric> <value> <unit>", checks its own
// result and exits with status 1 if the check fails, and ends with the
// process's peak RSS ("peak_rss_kb", VmHWM). bench/run sets GOMAXPROCS to
// the number of cores (Go's default too).
//
// Usage: go-bench BENCH ARGS..., one of: pingpong N, ring P T, spawn N,
// fanin P M, skynet SIZE DIV, payload S N, fanin-bounded P M C, pairs K N,
// crossworker N, hog N H, idle1m N, kill N, timers T I, tcpecho C R PORT.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// mailboxCap is the capacity of the buffered channel used as an actor's
// mailbox. A bounded buffer is what a Go programmer would write; it is
// large enough that senders rarely block in these benchmarks.
const mailboxCap = 256

func report(bench, metric string, value float64, unit string) {
	fmt.Printf("go %s %s %.3f %s\n", bench, metric, value, unit)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go: CHECK FAILED: "+format+"\n", args...)
	os.Exit(1)
}

// statusKB returns a field of /proc/self/status (VmRSS, VmHWM), in KiB.
func statusKB(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fail("cannot read /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	fail("no %s in /proc/self/status", field)
	return 0
}

// settledRSSKB is rss_after_drain_kb, the same rule in every system: VmRSS
// (KiB) once it has not changed for 500 ms, read every 10 ms from the end of
// the drain, at most 5 s.
func settledRSSKB() int64 {
	last, same := statusKB("VmRSS"), 0
	for i := 0; i < 500 && same < 50; i++ {
		time.Sleep(10 * time.Millisecond)
		now := statusKB("VmRSS")
		if now == last {
			same++
		} else {
			same = 0
		}
		last = now
	}
	return last
}

// rssBytes returns VmRSS of this process, in bytes.
func rssBytes() int64 { return statusKB("VmRSS") * 1024 }

// ---------------------------------------------------------------- pingpong

// ppMsg carries an int and the port (channel) the receiver should reply on.
type ppMsg struct {
	n     int
	reply chan ppMsg
}

func pingpong(n int) {
	pingBox := make(chan ppMsg, mailboxCap)
	pongBox := make(chan ppMsg, mailboxCap)
	done := make(chan int)

	// pong: reply on the port it got, with the same int, until told 0.
	go func() {
		for m := range pongBox {
			m.reply <- ppMsg{n: m.n}
			if m.n == 0 {
				return
			}
		}
	}()
	start := time.Now()
	// ping: n round trips counting down to 1, then a last 0 to stop pong.
	go func() {
		got := 0
		for i := n; i > 0; i-- {
			pongBox <- ppMsg{n: i, reply: pingBox}
			r := <-pingBox
			if r.n != i {
				fail("pingpong: sent %d got %d", i, r.n)
			}
			got++
		}
		done <- got
	}()
	got := <-done
	elapsed := time.Since(start)
	pongBox <- ppMsg{n: 0, reply: pingBox}
	<-pingBox
	if got != n {
		fail("pingpong: %d round trips, want %d", got, n)
	}
	report("pingpong", "ns_per_roundtrip", float64(elapsed.Nanoseconds())/float64(n), "ns")
}

// -------------------------------------------------------------------- ring

func ring(p, t int) {
	if p < 2 || t < 1 {
		fail("ring: need P >= 2 and T >= 1")
	}
	boxes := make([]chan int, p)
	for i := range boxes {
		boxes[i] = make(chan int, mailboxCap)
	}
	type result struct{ who, hops int }
	done := make(chan int)       // index of the member that saw 0
	hops := make(chan result, p) // per-member hop counts at exit
	var wg sync.WaitGroup
	for i := 0; i < p; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			next := boxes[(i+1)%p]
			count := 0
			for tok := range boxes[i] {
				if tok == 0 {
					done <- i
					continue // keep draining until the box is closed
				}
				next <- tok - 1
				count++
			}
			hops <- result{i, count}
		}(i)
	}
	start := time.Now()
	boxes[0] <- t
	last := <-done
	elapsed := time.Since(start)
	for _, b := range boxes {
		close(b)
	}
	wg.Wait()
	close(hops)
	total := 0
	for r := range hops {
		total += r.hops
	}
	if total != t || last != t%p {
		fail("ring: %d hops (want %d), 0 seen by %d (want %d)", total, t, last, t%p)
	}
	report("ring", "ns_per_hop", float64(elapsed.Nanoseconds())/float64(t), "ns")
}

// ------------------------------------------------------------------- spawn

func spawn(name string, n int) {
	rssBefore := rssBytes()
	var started, ended sync.WaitGroup
	answers := make(chan int, mailboxCap)
	boxes := make([]chan int, n)

	start := time.Now()
	started.Add(n)
	ended.Add(n)
	for i := 0; i < n; i++ {
		box := make(chan int, 1)
		boxes[i] = box
		go func(i int) {
			defer ended.Done()
			started.Done() // confirm: alive and about to wait
			<-box          // wait for the stop message
			answers <- i
		}(i)
	}
	started.Wait()
	spawnTime := time.Since(start)
	rssAlive := rssBytes()

	start = time.Now()
	go func() {
		for _, b := range boxes {
			b <- -1
		}
	}()
	sum := 0
	for i := 0; i < n; i++ {
		sum += <-answers
	}
	ended.Wait()
	stopTime := time.Since(start)
	if sum != n*(n-1)/2 {
		fail("spawn: answers sum %d, want %d", sum, n*(n-1)/2)
	}
	report(name, "ns_per_spawn", float64(spawnTime.Nanoseconds())/float64(n), "ns")
	report(name, "bytes_per_idle", float64(rssAlive-rssBefore)/float64(n), "B")
	report(name, "ns_per_stop", float64(stopTime.Nanoseconds())/float64(n), "ns")
}

// ------------------------------------------------------------------- fanin

// fanin: the mailbox is a channel of capacity capacity (mailboxCap for
// fanin, C for fanin-bounded).
func fanin(name string, p, m, capacity int) {
	box := make(chan int, capacity)
	done := make(chan [2]int)
	total := p * m
	go func() { // consumer: count to P*M, also sum the values as a check
		count, sum := 0, 0
		for count < total {
			sum += <-box
			count++
		}
		done <- [2]int{count, sum}
	}()
	start := time.Now()
	for j := 0; j < p; j++ {
		go func() {
			for i := 1; i <= m; i++ {
				box <- i
			}
		}()
	}
	res := <-done
	elapsed := time.Since(start)
	if res[0] != total || res[1] != p*m*(m+1)/2 {
		fail("fanin: count %d sum %d, want %d and %d", res[0], res[1], total, p*m*(m+1)/2)
	}
	report(name, "msgs_per_s", float64(total)/elapsed.Seconds(), "msg/s")
	report(name, "rss_after_drain_kb", float64(settledRSSKB()), "kB")
}

// ------------------------------------------------------------------ skynet

// skynetNode is one actor: a leaf answers its number, an inner node spawns
// div children over its range and answers the sum of their answers.
func skynetNode(parent chan<- int64, num, size, div int64) {
	if size == 1 {
		parent <- num
		return
	}
	box := make(chan int64, div)
	sub := size / div
	for i := int64(0); i < div; i++ {
		go skynetNode(box, num+i*sub, sub, div)
	}
	var sum int64
	for i := int64(0); i < div; i++ {
		sum += <-box
	}
	parent <- sum
}

func skynet(size, div int64) {
	if div < 2 {
		fail("skynet: DIV must be >= 2")
	}
	// the tree must split evenly down to leaves of size 1
	for s := size; s > 1; s /= div {
		if s%div != 0 {
			fail("skynet: SIZE must be a power of DIV")
		}
	}
	box := make(chan int64, 1)
	start := time.Now()
	go skynetNode(box, 0, size, div)
	sum := <-box
	elapsed := time.Since(start)
	if want := size * (size - 1) / 2; sum != want {
		fail("skynet: sum %d, want %d", sum, want)
	}
	fmt.Printf("go skynet sum %d sum\n", sum)
	report("skynet", "ms_total", float64(elapsed.Nanoseconds())/1e6, "ms")
}

// ----------------------------------------------------------------- payload

// fillPattern writes a position-dependent pattern so corruption is visible.
func fillPattern(b []byte) {
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
}

// payloadRun bounces a buffer between two goroutines for n round trips
// (2n one-way sends). If copyEach, every send allocates a new buffer and
// copies the bytes into it; otherwise the slice itself (pointer + length)
// is handed over and the sender does not touch it again.
func payloadRun(s, n int, copyEach bool) time.Duration {
	a2b := make(chan []byte, 1)
	b2a := make(chan []byte, 1)
	send := func(ch chan []byte, buf []byte) {
		if copyEach {
			nb := make([]byte, len(buf))
			copy(nb, buf)
			buf = nb
		}
		ch <- buf
	}
	orig := make([]byte, s)
	fillPattern(orig)
	probe := func(b []byte, k int) { // cheap per-hop check of one byte
		if len(b) != s {
			fail("payload: size %d, want %d", len(b), s)
		}
		j := (k * 4099) % s
		if b[j] != byte(j*7+j>>8) {
			fail("payload: corrupted byte %d", j)
		}
	}
	go func() { // B: echo every buffer back
		for k := 0; k < n; k++ {
			b := <-a2b
			probe(b, k)
			send(b2a, b)
		}
	}()
	start := time.Now()
	buf := orig
	for k := 0; k < n; k++ {
		send(a2b, buf)
		buf = <-b2a
		probe(buf, k)
	}
	elapsed := time.Since(start)
	if !bytes.Equal(buf, func() []byte { x := make([]byte, s); fillPattern(x); return x }()) {
		fail("payload: final buffer differs")
	}
	if !copyEach && &buf[0] != &orig[0] {
		fail("payload: transfer moved to a different buffer")
	}
	if copyEach && &buf[0] == &orig[0] {
		fail("payload: copy returned the original buffer")
	}
	return elapsed
}

func payload(s, n int) {
	if s < 1 || n < 1 {
		fail("payload: need S >= 1 and N >= 1")
	}
	// Copy: n round trips (2n sends). Transfer: 50n round trips (100n
	// sends), as every system does, so that the run is long enough to time.
	tc := payloadRun(s, n, true)
	tt := payloadRun(s, 50*n, false)
	report("payload", "copy_gbps", float64(s)*float64(2*n)/tc.Seconds()/1e9, "GB/s")
	report("payload", "transfer_ns", float64(tt.Nanoseconds())/float64(100*n), "ns")
}

// -------------------------------------------------------------------- main

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go-bench pingpong N | ring P T | spawn N | fanin P M | skynet SIZE DIV | payload S N |\n"+
		"  fanin-bounded P M C | pairs K N | crossworker N | hog N H | idle1m N | kill N | timers T I | tcpecho C R PORT")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := make([]int, 0, 3)
	for _, a := range os.Args[2:] {
		v, err := strconv.Atoi(a)
		if err != nil || v < 0 {
			usage()
		}
		args = append(args, v)
	}
	need := func(k int) {
		if len(args) != k {
			usage()
		}
	}
	switch os.Args[1] {
	case "pingpong":
		need(1)
		pingpong(args[0])
	case "ring":
		need(2)
		ring(args[0], args[1])
	case "spawn":
		need(1)
		spawn("spawn", args[0])
	case "idle1m":
		need(1)
		spawn("idle1m", args[0])
	case "fanin":
		need(2)
		fanin("fanin", args[0], args[1], mailboxCap)
	case "fanin-bounded":
		need(3)
		fanin("fanin-bounded", args[0], args[1], args[2])
	case "pairs":
		need(2)
		pairs(args[0], args[1])
	case "crossworker":
		need(1)
		crossworker(args[0])
	case "hog":
		need(2)
		hog(args[0], args[1])
	case "kill":
		need(1)
		kill(args[0])
	case "timers":
		need(2)
		timers(args[0], args[1])
	case "tcpecho":
		need(3)
		tcpecho(args[0], args[1], args[2])
	case "skynet":
		need(2)
		skynet(int64(args[0]), int64(args[1]))
	case "payload":
		need(2)
		payload(args[0], args[1])
	default:
		usage()
	}
	report(os.Args[1], "peak_rss_kb", float64(statusKB("VmHWM")), "kB")
}

// ------------------------------------------------------------ second round

// quantile is the value at index floor(p*n) of the sorted samples, the
// same rule in every system.
func quantile(s []uint32, p float64) float64 {
	i := int(p * float64(len(s)))
	if i >= len(s) {
		i = len(s) - 1
	}
	return float64(s[i])
}

func sortSamples(s []uint32) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }

func clampNs(d time.Duration) uint32 {
	if d < 0 {
		return 0
	}
	if d > time.Duration(^uint32(0)) {
		return ^uint32(0)
	}
	return uint32(d)
}

// timedPair makes n round trips between a pinger and a ponger goroutine,
// each timed from the send to the answer into lat; it starts when start is
// closed. If lock, both goroutines are locked to OS threads of their own.
func timedPair(n int, lat []uint32, start <-chan struct{}, lock bool, wg *sync.WaitGroup) {
	pingBox := make(chan ppMsg, mailboxCap)
	pongBox := make(chan ppMsg, mailboxCap)
	go func() {
		if lock {
			runtime.LockOSThread()
		}
		for m := range pongBox {
			m.reply <- ppMsg{n: m.n}
			if m.n == 0 {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		if lock {
			runtime.LockOSThread()
		}
		<-start
		t0 := time.Now()
		for i := n; i > 0; i-- {
			pongBox <- ppMsg{n: i, reply: pingBox}
			r := <-pingBox
			t := time.Now()
			if r.n != i {
				fail("pair: sent %d got %d", i, r.n)
			}
			lat[n-i] = clampNs(t.Sub(t0))
			t0 = t
		}
		pongBox <- ppMsg{n: 0, reply: pingBox}
		<-pingBox
	}()
}

func pairs(k, n int) {
	lat := make([]uint32, k*n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(k)
	for i := 0; i < k; i++ {
		timedPair(n, lat[i*n:(i+1)*n], start, false, &wg)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	for _, v := range lat {
		if v == 0 {
			fail("pairs: a round trip was not timed")
		}
	}
	report("pairs", "msgs_per_s", float64(2*k*n)/elapsed.Seconds(), "msg/s")
	sortSamples(lat)
	report("pairs", "p50_ns", quantile(lat, 0.5), "ns")
	report("pairs", "p99_ns", quantile(lat, 0.99), "ns")
	report("pairs", "p999_ns", quantile(lat, 0.999), "ns")
}

// crossworker: the two ends locked to OS threads of their own
// (runtime.LockOSThread), so that every hop crosses threads.
func crossworker(n int) {
	lat := make([]uint32, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	timedPair(n, lat, start, true, &wg)
	close(start)
	wg.Wait()
	sortSamples(lat)
	report("crossworker", "p50_ns", quantile(lat, 0.5), "ns")
	report("crossworker", "p99_ns", quantile(lat, 0.99), "ns")
	report("crossworker", "p999_ns", quantile(lat, 0.999), "ns")
}

// hog: a goroutine computes for h ms (Go preempts it asynchronously) while
// a timed pair makes n round trips.
func hog(n, h int) {
	lat := make([]uint32, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	var turns int64
	go func() {
		defer wg.Done()
		<-start
		end := time.Now().Add(time.Duration(h) * time.Millisecond)
		x := uint64(1)
		for time.Now().Before(end) {
			for i := 0; i < 100; i++ {
				x = x*6364136223846793005 + 1
			}
			turns++
		}
		if x == 0 {
			turns--
		}
	}()
	timedPair(n, lat, start, false, &wg)
	close(start)
	wg.Wait()
	if turns < 1 {
		fail("hog: the hog did not run")
	}
	sortSamples(lat)
	report("hog", "p99_ns", quantile(lat, 0.99), "ns")
	report("hog", "max_ns", float64(lat[n-1]), "ns")
}

// kill: a goroutine cannot be killed from outside; the nearest thing is a
// kill channel it selects on next to its mailbox, and an exit notice it
// sends as it returns. The busy goroutine polls an atomic flag at every
// turn of its loop (what isola's isola_check_interrupts does).
func kill(n int) {
	exits := make(chan int, n)
	killers := make([]chan struct{}, n)
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		k := make(chan struct{})
		box := make(chan int, 1)
		killers[i] = k
		go func(i int) {
			defer func() { exits <- i }()
			started.Done()
			select {
			case <-k:
			case <-box:
			}
		}(i)
	}
	started.Wait()
	t0 := time.Now()
	for _, k := range killers {
		close(k)
	}
	for i := 0; i < n; i++ {
		<-exits
	}
	killTime := time.Since(t0)
	var flag int32
	running := make(chan struct{})
	busyExit := make(chan struct{})
	go func() {
		defer close(busyExit)
		close(running)
		x := uint64(1)
		for atomic.LoadInt32(&flag) == 0 {
			for i := 0; i < 100; i++ {
				x = x*6364136223846793005 + 1
			}
		}
		if x == 0 {
			fmt.Fprint(io.Discard, x)
		}
	}()
	<-running
	t1 := time.Now()
	atomic.StoreInt32(&flag, 1)
	<-busyExit
	busy := time.Since(t1)
	report("kill", "ns_per_kill", float64(killTime.Nanoseconds())/float64(n), "ns")
	report("kill", "busy_kill_us", float64(busy.Nanoseconds())/1e3, "us")
}

// timers: goroutine i of n starts t/n one-shot timers (time.AfterFunc),
// timer j with a delay of (i*t/n + j) mod 11 ms, and counts the firings.
func timers(t, n int) {
	if n < 1 || t < n || t%n != 0 {
		fail("timers: need T >= I >= 1, I dividing T")
	}
	per := t / n
	done := make(chan int, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		go func(i int) {
			fired := make(chan struct{}, per)
			for j := 0; j < per; j++ {
				d := time.Duration((i*per+j)%11) * time.Millisecond
				time.AfterFunc(d, func() { fired <- struct{}{} })
			}
			for j := 0; j < per; j++ {
				<-fired
			}
			done <- per
		}(i)
	}
	total := 0
	for i := 0; i < n; i++ {
		total += <-done
	}
	elapsed := time.Since(start)
	if total != t {
		fail("timers: %d fired, want %d", total, t)
	}
	report("timers", "timers_per_s", float64(t)/elapsed.Seconds(), "timer/s")
}

// tcpecho: the Go net server, a goroutine per connection that writes back
// what it reads; it ends when c connections have closed.
func tcpecho(c, r, port int) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fail("tcpecho: %v", err)
	}
	closed := make(chan struct{}, c)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(conn net.Conn) {
				buf := make([]byte, 4096)
				for {
					k, err := conn.Read(buf)
					if k > 0 {
						if _, werr := conn.Write(buf[:k]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				conn.Close()
				closed <- struct{}{}
			}(conn)
		}
	}()
	for i := 0; i < c; i++ {
		<-closed
	}
	ln.Close()
	_ = r
}
