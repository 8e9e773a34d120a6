// Go values for the differential test (tests/differential_go.rs): a map of slices, an
// interface holding a struct, errors, times, a duration and channels. The program writes
// each value with `%v` to the file named by its first argument, one `name=value` line each
// (maps one line per entry), then calls inspect, where the test stops it. It prints `ready`
// and starts on one stdin line.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

type Order struct {
	ID       int
	Customer string
	Items    []int
}

var sink int

//go:noinline
func inspect(scores map[string][]int, held interface{}, err error, wrapped error, at time.Time, wait time.Duration, jobs chan int, done chan struct{}, big map[int]int) int {
	sink = len(scores) + len(jobs) + cap(done) + int(wait) + at.Nanosecond() + len(big) // @here
	if held != nil && err != nil && wrapped != nil {
		sink++
	}
	return sink
}

func main() {
	scores := map[string][]int{"alice": {90, 85}, "bob": {70}, "carol": {}}
	var held interface{} = Order{ID: 7, Customer: "bob", Items: []int{1, 2}}
	err := errors.New("disk full")
	wrapped := fmt.Errorf("saving order 7: %w", err)
	at := time.Date(2026, 12, 6, 10, 0, 0, 123000000, time.UTC)
	wait := 1500 * time.Millisecond
	jobs := make(chan int, 4)
	jobs <- 1
	jobs <- 2
	done := make(chan struct{})
	close(done)
	// 100 entries in 16 buckets (B = 4): some buckets overflow.
	big := map[int]int{}
	for i := 0; i < 100; i++ {
		big[i] = i * 3
	}
	var out strings.Builder
	fmt.Fprintf(&out, "scores.len=%d\n", len(scores))
	for k, v := range scores {
		fmt.Fprintf(&out, "scores[%v]=%v\n", k, v)
	}
	fmt.Fprintf(&out, "big.len=%d\n", len(big))
	for k, v := range big {
		fmt.Fprintf(&out, "big[%v]=%v\n", k, v)
	}
	fmt.Fprintf(&out, "held=%v\n", held)
	fmt.Fprintf(&out, "err=%v\n", err)
	fmt.Fprintf(&out, "wrapped=%v\n", wrapped)
	fmt.Fprintf(&out, "at=%v\n", at)
	fmt.Fprintf(&out, "wait=%v\n", wait)
	fmt.Fprintf(&out, "jobs=%d %d open\n", len(jobs), cap(jobs))
	fmt.Fprintf(&out, "done=%d %d closed\n", len(done), cap(done))
	if err := os.WriteFile(os.Args[1], []byte(out.String()), 0o644); err != nil {
		panic(err)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	// Keep calling, so the test's breakpoint is met whichever thread runs it.
	for {
		inspect(scores, held, err, wrapped, at, wait, jobs, done, big)
		time.Sleep(time.Millisecond)
	}
}
