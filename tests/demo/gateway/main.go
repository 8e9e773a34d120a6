// demo-gateway: the Go front door of the demo. POST /checkout starts a trace (or joins the
// caller's), and forwards the order to the orders service with a W3C traceparent header.
//
// Usage: demo-gateway -listen ADDR -orders URL
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"time"
)

var traceparentRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// outgoing returns the traceparent for the call to orders: the caller's trace with a new
// span, or a new sampled trace.
func outgoing(incoming string) string {
	if m := traceparentRe.FindStringSubmatch(incoming); m != nil {
		return fmt.Sprintf("00-%s-%s-%s", m[1], randomHex(8), m[3])
	}
	return fmt.Sprintf("00-%s-%s-01", randomHex(16), randomHex(8))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	orders := flag.String("orders", "", "base URL of the orders service")
	flag.Parse()
	if *orders == "" {
		fmt.Fprintln(os.Stderr, "usage: demo-gateway -listen ADDR -orders URL")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 120 * time.Second}
	http.HandleFunc("/checkout", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		tp := outgoing(r.Header.Get("traceparent"))
		fmt.Printf("access POST /checkout traceparent=%s\n", tp) // @probe:demo_gateway_access
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, _ := http.NewRequest(http.MethodPost, *orders+"/orders", bytes.NewReader(body))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("traceparent", tp)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "orders: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("content-type", "application/json")
		w.Header().Set("traceparent", tp)
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", *listen, err)
	}
	fmt.Printf("ready %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
