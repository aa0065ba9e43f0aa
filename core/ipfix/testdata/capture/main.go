// Command capture listens on a UDP address and saves every datagram it
// receives as OUT/msgNN.bin until no datagram arrives for -idle. gen.sh uses
// it to record softflowd's IPFIX output.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "UDP address to listen on")
	out := flag.String("out", "softflowd", "directory for msgNN.bin files")
	idle := flag.Duration("idle", 3*time.Second, "stop after this long without a datagram (once one arrived)")
	ready := flag.String("ready", "", "file to write the bound address to")
	flag.Parse()
	conn, err := net.ListenPacket("udp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(conn.LocalAddr().String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 65535)
	n := 0
	deadline := 60 * time.Second // wait for the first datagram
	for {
		_ = conn.SetReadDeadline(time.Now().Add(deadline))
		m, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		name := filepath.Join(*out, fmt.Sprintf("msg%02d.bin", n))
		if err := os.WriteFile(name, buf[:m], 0o644); err != nil {
			log.Fatal(err)
		}
		n++
		deadline = *idle
	}
	fmt.Printf("captured %d datagrams\n", n)
}
