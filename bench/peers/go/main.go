// SPDX-License-Identifier: MIT
// Go peer for the isola benchmarks (see bench/README.md and BENCHMARKS.md).
//
// Actors are goroutines; an actor's mailbox is a buffered channel. Every
// benchmark prints lines "go <bench> <metric> <value> <unit>", checks its own
// result and exits with status 1 if the check fails. GOMAXPROCS is left at
// its default (all cores).
//
// Usage: go-bench BENCH ARGS..., one of: pingpong N, ring P T, spawn N,
// fanin P M, skynet SIZE DIV, payload S N.
package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
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

// rssBytes returns VmRSS of this process from /proc/self/status, in bytes.
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fail("cannot read /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	fail("no VmRSS in /proc/self/status")
	return 0
}

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

func spawn(n int) {
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
	report("spawn", "ns_per_spawn", float64(spawnTime.Nanoseconds())/float64(n), "ns")
	report("spawn", "bytes_per_idle", float64(rssAlive-rssBefore)/float64(n), "B")
	report("spawn", "ns_per_stop", float64(stopTime.Nanoseconds())/float64(n), "ns")
}

// ------------------------------------------------------------------- fanin

func fanin(p, m int) {
	box := make(chan int, mailboxCap)
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
	report("fanin", "msgs_per_s", float64(total)/elapsed.Seconds(), "msg/s")
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
	sends := float64(2 * n)
	tc := payloadRun(s, n, true)
	tt := payloadRun(s, n, false)
	report("payload", "copy_gbps", float64(s)*sends/tc.Seconds()/1e9, "GB/s")
	report("payload", "transfer_ns", float64(tt.Nanoseconds())/sends, "ns")
}

// -------------------------------------------------------------------- main

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go-bench pingpong N | ring P T | spawn N | fanin P M | skynet SIZE DIV | payload S N")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := make([]int, 0, 2)
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
		spawn(args[0])
	case "fanin":
		need(2)
		fanin(args[0], args[1])
	case "skynet":
		need(2)
		skynet(int64(args[0]), int64(args[1]))
	case "payload":
		need(2)
		payload(args[0], args[1])
	default:
		usage()
	}
}
