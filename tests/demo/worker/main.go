// demo-worker: the demo's queue consumer. It takes fulfilment jobs that orders enqueues in
// Redis (LPUSH jobs <order id>, with the job's trace context stored as JSON under
// job:<order id>, an OpenTracing TEXT_MAP carrier) and fulfils them. It speaks RESP by
// hand over net.Conn and has no tracing library: Tracery follows the job's trace from the
// bytes Redis returns.
//
// Usage: demo-worker -redis redis://HOST:PORT [-list jobs]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// job is what orders stores under job:<order id>.
type job struct {
	Order    int64  `json:"order"`
	Customer string `json:"customer"`
	Item     string `json:"item"`
	Qty      int    `json:"qty"`
}

var shipped int64

// brpopTimeout is how long (seconds) one BRPOP waits on an empty list before it is sent
// again.
const brpopTimeout = "1"

// fulfil ships one order. Not inlined: the demo breaks on its line.
//
//go:noinline
func fulfil(j job) string {
	shipped += int64(j.Qty)
	return fmt.Sprintf("shipped %d x %s to %s", j.Qty, j.Item, j.Customer)
}

// command writes one RESP command array in one write.
func command(conn net.Conn, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := io.WriteString(conn, b.String())
	return err
}

func line(r *bufio.Reader) (string, error) {
	s, err := r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

// bulk reads one bulk-string reply; ok is false for a null one.
func bulk(r *bufio.Reader) (string, bool, error) {
	head, err := line(r)
	if err != nil {
		return "", false, err
	}
	if strings.HasPrefix(head, "-") {
		return "", false, fmt.Errorf("redis: %s", head[1:])
	}
	if !strings.HasPrefix(head, "$") {
		return "", false, fmt.Errorf("expected a bulk string, got %q", head)
	}
	n, err := strconv.Atoi(head[1:])
	if err != nil || n < 0 {
		return "", false, err
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", false, err
	}
	return string(buf[:n]), true, nil
}

func run(addr, list string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot connect to Redis at %s: %w", addr, err)
	}
	r := bufio.NewReader(conn)
	fmt.Printf("ready %s\n", addr)
	for {
		// A timeout, so that a worker paused with SIGSTOP (the demo does) stops waiting
		// on the list: jobs pushed meanwhile stay in it instead of being handed to the
		// paused worker's pending BRPOP.
		if err := command(conn, "BRPOP", list, brpopTimeout); err != nil {
			return err
		}
		head, err := line(r)
		if err == nil && head == "*-1" {
			continue
		}
		if err != nil || head != "*2" {
			return fmt.Errorf("BRPOP reply %q: %v", head, err)
		}
		if _, _, err := bulk(r); err != nil {
			return err
		}
		id, _, err := bulk(r)
		if err != nil {
			return err
		}
		// The job's JSON: reading it is what makes this goroutine serve the job's trace.
		if err := command(conn, "GET", "job:"+id); err != nil {
			return err
		}
		raw, ok, err := bulk(r)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Printf("job %s: no job:%s in Redis, skipped\n", id, id)
			continue
		}
		var j job
		if err := json.Unmarshal([]byte(raw), &j); err != nil {
			fmt.Printf("job %s: bad JSON %q: %v\n", id, raw, err)
			continue
		}
		fmt.Printf("job %s: %s\n", id, fulfil(j))
	}
}

func main() {
	url := flag.String("redis", "redis://127.0.0.1:6379", "Redis URL (redis://HOST:PORT)")
	list := flag.String("list", "jobs", "the list to take jobs from")
	flag.Parse()
	addr := strings.TrimSuffix(strings.TrimPrefix(*url, "redis://"), "/")
	if err := run(addr, *list); err != nil {
		fmt.Fprintln(os.Stderr, "demo-worker:", err)
		os.Exit(1)
	}
}
