// Go shapes the fixture does not have: interfaces (empty, non-empty, error, nil), a map, an
// array, float32, byte and rune. Used by decode_go_interfaces.rs; values are asserted there.
// It prints `ready` and starts on one stdin line.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"time"
)

type Shape interface{ Area() int }

type Rect struct{ W, H int }

func (r *Rect) Area() int { return r.W * r.H }

var sink int

//go:noinline
func describe(any interface{}, s Shape, err error, nilErr error, m map[string]int, arr [3]int32, f float32, b byte, r rune) int {
	sink = len(m) + int(arr[0]) + int(f) + int(b) + int(r) + s.Area() // @here
	if err != nil && nilErr == nil && any != nil {
		sink++
	}
	return sink
}

func main() {
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	rect := &Rect{W: 2, H: 3}
	boom := errors.New("boom")
	for {
		describe(rect, rect, boom, nil, map[string]int{"a": 1}, [3]int32{7, 8, 9}, 1.5, 'x', 'é')
		time.Sleep(time.Millisecond)
	}
}
