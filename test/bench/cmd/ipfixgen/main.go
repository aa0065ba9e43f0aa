// Command ipfixgen sends IPFIX over UDP at an exact offered rate, for the
// loopback ingest bench (test/bench/ingest.sh).
//
// It pre-encodes one message of -per records that look like Antrea's flow
// records (IPv4 5-tuple, millisecond times, delta and total counters and
// their reverse twins, two variable-length Antrea strings: source and
// destination Pod names) and sends it from -workers sockets (one exporter
// each), every message on a fixed schedule so that the whole stream offers
// exactly -rate records per second. Each worker sends its template first and
// again every second; every record has packetDeltaCount 1, so a collector
// that aggregates still reports how many records it received as the sum of
// packets. The header's sequence number and export time are set per message.
//
// Pacing sleeps until the next message is due and then sends every message
// due by then, so the generator takes the CPU its sends cost and leaves the
// rest of the machine to the collector. (It used to spin with
// runtime.Gosched between messages closer than 200 µs, which took one to
// two cores of the 2-core bench machine at any rate.)
//
// It prints one JSON line: records and messages sent, seconds taken, and the
// rate achieved (below -rate when the sender cannot keep up).
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4739", "collector UDP address")
	rate := flag.Float64("rate", 100000, "offered records per second, all workers together")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	workers := flag.Int("workers", 4, "sending goroutines, each its own socket (exporter)")
	per := flag.Int("per", 30, "records per message")
	domain := flag.Uint("domain", 1, "observation domain ID")
	flag.Parse()

	tmplMsg, dataMsg, err := messages(*per, uint32(*domain))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipfixgen:", err)
		os.Exit(1)
	}
	msgRate := *rate / float64(*per) / float64(*workers) // messages per second per worker
	interval := time.Duration(float64(time.Second) / msgRate)
	total := int(msgRate * duration.Seconds()) // messages per worker

	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().Add(20 * time.Millisecond)
	for w := 0; w < *workers; w++ {
		c, err := net.Dial("udp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ipfixgen:", err)
			os.Exit(1)
		}
		if uc, ok := c.(*net.UDPConn); ok {
			uc.SetWriteBuffer(4 << 20)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			tm, dm := bytes.Clone(tmplMsg), bytes.Clone(dataMsg)
			var seq uint32
			send := func(m []byte, now time.Time) {
				binary.BigEndian.PutUint32(m[4:], uint32(now.Unix()))
				binary.BigEndian.PutUint32(m[8:], seq)
				if _, err := c.Write(m); err == nil {
					seq += uint32(*per)
					sent.Add(1)
				}
			}
			// Stagger the workers across one interval.
			next := start.Add(interval * time.Duration(w) / time.Duration(*workers))
			lastTemplate := time.Time{}
			for i := 0; i < total; {
				now := time.Now()
				if d := next.Sub(now); d > 0 {
					time.Sleep(d)
					now = time.Now()
				}
				// Every message due by now, back to back: the timer's
				// slack (tens of µs) makes bursts of a few messages.
				for ; i < total && !next.After(now); i++ {
					if now.Sub(lastTemplate) >= time.Second {
						send(tm, now)
						lastTemplate = now
					} else {
						send(dm, now)
					}
					next = next.Add(interval)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	n := sent.Load()
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"records":         n * int64(*per),
		"messages":        n,
		"seconds":         secs,
		"offered_rate":    *rate,
		"achieved_rate":   float64(n*int64(*per)) / secs,
		"bytes_per_msg":   len(dataMsg),
		"records_per_msg": *per,
	})
}

// messages encodes per Antrea-like records twice: once with the template
// (the first message of a session) and once without.
func messages(per int, domain uint32) (tmpl, data []byte, err error) {
	b := flow.NewBatch(per)
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for i := 0; i < per; i++ {
		r := b.Append()
		r.SetAddr(flow.SourceAddress, netip.AddrFrom4([4]byte{10, 244, byte(i / 200), byte(i)}))
		r.SetAddr(flow.DestinationAddress, netip.AddrFrom4([4]byte{10, 96, 0, byte(i % 7)}))
		r.SetUint(flow.SourceTransportPort, uint64(40000+i))
		r.SetUint(flow.DestinationTransportPort, 8080)
		r.SetUint(flow.ProtocolIdentifier, 6)
		r.SetUint(flow.FlowStart, uint64(t0.UnixNano()))
		r.SetUint(flow.FlowEnd, uint64(t0.Add(time.Duration(i)*time.Second).UnixNano()))
		r.SetUint(flow.PacketDeltaCount, 1) // sum of packets = records
		r.SetUint(flow.OctetDeltaCount, uint64(1500+i))
		r.SetUint(flow.PacketTotalCount, uint64(100+i))
		r.SetUint(flow.OctetTotalCount, uint64(150000+i))
		r.SetUint(flow.ReversePacketDeltaCount, 1)
		r.SetUint(flow.ReverseOctetDeltaCount, uint64(900+i))
		r.SetString(flow.SourcePodName, fmt.Sprintf("frontend-7d9c6b-%05d", i))
		r.SetString(flow.DestinationPodName, fmt.Sprintf("backend-%d", i%7))
	}
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: domain, MaxMessageSize: 65000})
	var msgs [][]byte
	collect := func(m []byte) error { msgs = append(msgs, bytes.Clone(m)); return nil }
	if err := enc.Encode(b.Records, t0, collect); err != nil {
		return nil, nil, err
	}
	if err := enc.Encode(b.Records, t0, collect); err != nil {
		return nil, nil, err
	}
	if len(msgs) != 2 {
		return nil, nil, fmt.Errorf("encoder made %d messages of %d records, want 2", len(msgs), per)
	}
	return msgs[0], msgs[1], nil
}
