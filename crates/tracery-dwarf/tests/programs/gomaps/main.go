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
	"unsafe"
)

var sink int

//go:noinline
func inspect(scores map[string][]int, ids map[int]int, empty map[string]int) int {
	sink = len(scores) + len(ids) + len(empty) // @here
	return sink
}

//go:noinline
func inspectOverflow(over map[string][]int) int {
	sink = len(over) // @overflow
	return sink
}

//go:noinline
func inspectGrowing(growing map[int]int) int {
	sink = len(growing) // @growing
	return sink
}

// hmap is the runtime's map header (Go 1.19-1.23, runtime/map.go).
type hmap struct {
	count      int
	flags      uint8
	B          uint8
	noverflow  uint16
	hash0      uint32
	buckets    unsafe.Pointer
	oldbuckets unsafe.Pointer
	nevacuate  uintptr
	extra      unsafe.Pointer
}

func header(m any) *hmap {
	return (*hmap)((*[2]unsafe.Pointer)(unsafe.Pointer(&m))[1])
}

// overflowing returns a map[string][]int of 13 entries in two buckets (B = 1) whose first
// bucket has an overflow bucket and that is not growing. The hash seed is random per map,
// so it retries. Bucket 0 is the one that overflows: with 64 ops per hit, the string and
// slice of each of the 24 cells planned (two buckets and one overflow bucket) fit only when
// the overflow chain planned first is the one that holds the entries.
func overflowing() map[string][]int {
	for try := 0; ; try++ {
		m := map[string][]int{}
		for i := 0; i < 13; i++ {
			m[fmt.Sprintf("k%02d", i)] = []int{i, i * i}
		}
		h := header(m)
		// bucket<string,[]int>: tophash [8]uint8, keys [8]string, values [8][]int, overflow.
		const size = 8 + 8*16 + 8*24 + 8
		first := *(*unsafe.Pointer)(unsafe.Add(h.buckets, size-8))
		if h.B == 1 && h.oldbuckets == nil && first != nil {
			return m
		}
		if try > 100000 {
			panic("no overflowing map")
		}
	}
}

// growing returns a map[int]int caught mid-growth: inserting the 27th entry into four
// buckets (load factor 6.5) starts a doubling to eight; that insert evacuates at most two
// of the four old buckets, and no later write moves the rest.
func growing() map[int]int {
	for {
		m := map[int]int{}
		for i := 0; i < 26; i++ {
			m[i*3] = i
		}
		h := header(m)
		if h.B != 2 || h.oldbuckets != nil {
			continue // an overflow-driven same-size growth; try another seed
		}
		m[26*3] = 26
		if h.B == 3 && h.oldbuckets != nil && h.flags&8 == 0 {
			return m
		}
	}
}

func main() {
	scores := map[string][]int{"alice": {90, 85}, "bob": {70}, "carol": {}}
	// Twenty entries: four buckets (B = 2).
	ids := map[int]int{}
	for i := 0; i < 20; i++ {
		ids[i*7] = i * i
	}
	empty := map[string]int{}
	over := overflowing()
	grow := growing()
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
	fmt.Fprintf(&out, "over.len=%d\n", len(over))
	for k, v := range over {
		fmt.Fprintf(&out, "over[%v]=%v\n", k, v)
	}
	fmt.Fprintf(&out, "growing.len=%d\n", len(grow))
	for k, v := range grow {
		fmt.Fprintf(&out, "growing[%v]=%v\n", k, v)
	}
	if err := os.WriteFile(os.Args[1], []byte(out.String()), 0o644); err != nil {
		panic(err)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	// Like goiface: keep calling, so the test's breakpoint is met whichever thread runs it.
	for {
		inspect(scores, ids, empty)
		inspectOverflow(over)
		inspectGrowing(grow)
		time.Sleep(time.Millisecond)
	}
}
