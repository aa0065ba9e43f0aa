package ipfix

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/mmsg"
)

// udpFlushBytes is how many encoded bytes Export collects before it sends
// them with one sendmmsg(2): a batch of 256 records is usually less, so a
// batch goes out in one system call.
const udpFlushBytes = 1 << 20

// udpSender collects the encoder's messages back to back in one buffer and
// sends them in batches with sendmmsg(2) (internal/mmsg). It belongs to
// the goroutine holding the exporter's busy token.
type udpSender struct {
	w      *mmsg.Writer
	slab   []byte // pending messages, back to back
	ends   []int  // end offset in slab of each pending message
	recs   []int  // data records in each pending message
	inputs []int  // the engine's records done in each (ipfix.Encoder.MessageInputs)
	msgs   [][]byte

	// Outcome of the current Export.
	sent, failed, refused int
	lost                  int // the engine's records in messages not sent
	firstErr              error
}

func newUDPSender(c *net.UDPConn) (*udpSender, error) {
	w, err := mmsg.NewWriter(c)
	if err != nil {
		return nil, err
	}
	return &udpSender{w: w, slab: make([]byte, 0, udpFlushBytes+maxUDPPayload)}, nil
}

// maxUDPPayload is the largest UDP payload over IPv4 (65535 - 20 - 8).
const maxUDPPayload = 65507

func (u *udpSender) add(msg []byte, records, inputs int) {
	u.slab = append(u.slab, msg...)
	u.ends = append(u.ends, len(u.slab))
	u.recs = append(u.recs, records)
	u.inputs = append(u.inputs, inputs)
}

// flush sends every pending message. A message the kernel refuses is
// retried once when the refusal reports an earlier datagram (ECONNREFUSED:
// ICMP port unreachable), then counted and skipped: UDP is fire and
// forget, the rest still goes out.
func (u *udpSender) flush(e *Exporter) {
	if len(u.ends) == 0 {
		return
	}
	msgs := u.msgs[:0]
	start := 0
	for _, end := range u.ends {
		msgs = append(msgs, u.slab[start:end])
		start = end
	}
	u.msgs = msgs
	recs, inputs := u.recs, u.inputs
	retried := false
	for len(msgs) > 0 {
		n, err := u.w.Write(msgs)
		for i := range n {
			e.messages.Add(1)
			e.bytes.Add(uint64(len(msgs[i])))
			e.records.Add(uint64(recs[i]))
		}
		u.sent += n
		msgs, recs, inputs = msgs[n:], recs[n:], inputs[n:]
		if err == nil {
			break
		}
		if u.firstErr == nil {
			u.firstErr = err
		}
		e.sendErrors.Add(1)
		if errors.Is(err, syscall.ECONNREFUSED) && !retried {
			// The refusal is about a datagram already sent, which the
			// collector lost; this one was not sent yet: try it once more.
			u.refused++
			retried = true
			continue
		}
		// msgs[0] cannot be sent: count its data records, and the
		// engine's records it held, and go on.
		u.failed++
		u.lost += inputs[0]
		e.recordsDropped.Add(uint64(recs[0]))
		msgs, recs, inputs = msgs[1:], recs[1:], inputs[1:]
		retried = false
	}
	u.slab, u.ends, u.recs, u.inputs = u.slab[:0], u.ends[:0], u.recs[:0], u.inputs[:0]
}

func (e *Exporter) exportUDP(recs []*flow.Record) error {
	u := e.udp
	if u == nil {
		return fmt.Errorf("%s: export before start", ID)
	}
	u.sent, u.failed, u.refused, u.lost, u.firstErr = 0, 0, 0, 0, nil
	err := e.enc.Encode(recs, time.Now(), func(msg []byte) error {
		u.add(msg, e.enc.MessageRecords(), e.enc.MessageInputs())
		if len(u.slab) >= udpFlushBytes || len(u.ends) >= mmsg.MaxBatch {
			u.flush(e)
		}
		return nil
	})
	u.flush(e)
	// emit never fails, so err only lists records that cannot be encoded
	// (too large, empty): they are dropped and counted by reason, the
	// others went out.
	drops := e.countEncodeErrors(err, len(recs))
	if u.firstErr != nil {
		e.logLimited("send ipfix", "address", e.cfg.Address, "failed_messages", u.failed, "refused", u.refused, "err", u.firstErr)
	}
	if u.lost > 0 {
		// The records of the datagrams the kernel refused are dropped; the
		// others went out.
		drops = errors.Join(drops, plugin.Dropped(plugin.DropSendError, u.lost,
			fmt.Errorf("%s: send to %s: %d of %d messages failed, %d earlier refused: %w",
				ID, e.cfg.Address, u.failed, u.failed+u.sent, u.refused, u.firstErr)))
	}
	return drops
}
