// demo-payments: the last hop of the demo. POST /pay charges an order (always succeeds)
// and logs the traceparent it was called with.
//
// Usage: demo-payments -listen ADDR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
)

type payment struct {
	OrderID     int64 `json:"order_id"`
	AmountCents int64 `json:"amount_cents"`
}

var charged int64

//go:noinline
func charge(p payment) int64 {
	return atomic.AddInt64(&charged, p.AmountCents)
}

// receipt is written on a goroutine of its own, as services hand work to workers; the
// request waits for it. Tests break here to show the new goroutine serves the request's
// trace.
//
//go:noinline
func receipt(p payment, total int64) string {
	return fmt.Sprintf("order %d: %d cents, total %d", p.OrderID, p.AmountCents, total)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	http.HandleFunc("/pay", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("access POST /pay traceparent=%s\n", r.Header.Get("traceparent"))
		var p payment
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.AmountCents < 0 {
			http.Error(w, "bad payment", http.StatusBadRequest)
			return
		}
		total := charge(p)
		done := make(chan string, 1)
		go func() { done <- receipt(p, total) }()
		<-done
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"ok": true, "order_id": p.OrderID, "charged_total": total})
	})
	// Forces a full garbage collection and reports how many have completed, so tests can
	// show the runtime still stops the world while one goroutine is frozen.
	http.HandleFunc("/debug/gc", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		json.NewEncoder(w).Encode(map[string]any{"num_gc": m.NumGC})
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", *listen, err)
	}
	fmt.Printf("ready %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
