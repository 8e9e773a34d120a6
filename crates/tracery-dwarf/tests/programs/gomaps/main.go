// Go maps for the differential test (tests/differential_go.rs). The program writes each
// entry with `%v` to the file named by its first argument, one line per entry, then calls
// inspect, where the test stops it. It prints `ready` and starts on one stdin line.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"
)

var sink int

//go:noinline
func inspect(scores map[string][]int, ids map[int]int, empty map[string]int) int {
	sink = len(scores) + len(ids) + len(empty) // @here
	return sink
}

func main() {
	scores := map[string][]int{"alice": {90, 85}, "bob": {70}, "carol": {}}
	// Twenty entries: four buckets (B = 2).
	ids := map[int]int{}
	for i := 0; i < 20; i++ {
		ids[i*7] = i * i
	}
	empty := map[string]int{}
	var out strings.Builder
	fmt.Fprintf(&out, "scores.len=%d\n", len(scores))
	for k, v := range scores {
		fmt.Fprintf(&out, "scores[%v]=%v\n", k, v)
	}
	fmt.Fprintf(&out, "ids.len=%d\n", len(ids))
	for k, v := range ids {
		fmt.Fprintf(&out, "ids[%v]=%v\n", k, v)
	}
	fmt.Fprintf(&out, "empty.len=%d\n", len(empty))
	if err := os.WriteFile(os.Args[1], []byte(out.String()), 0o644); err != nil {
		panic(err)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	// Like goiface: keep calling, so the test's breakpoint is met whichever thread runs it.
	for {
		inspect(scores, ids, empty)
		time.Sleep(time.Millisecond)
	}
}
