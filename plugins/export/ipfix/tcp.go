package ipfix

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
)

// maxTracked bounds how many written messages are remembered (their end
// offset and record count, not their bytes) to count the records a broken
// connection had not delivered.
const maxTracked = 1 << 16

// message is one encoded message of the batch being sent.
type message struct {
	off, len int // in tcpState.arena
	records  int // data records
	inputs   int // the engine's records done in it (ipfix.Encoder.MessageInputs)
}

// sentMessage is a message written on the current connection and not yet
// known to be acknowledged.
type sentMessage struct {
	end     uint64 // bytes written on the connection once it was
	records int
	buf     []byte // its bytes while in the resend window, else nil
}

// tcpState is the TCP path's state, owned by the goroutine holding busy.
type tcpState struct {
	arena []byte    // the batch's encoded messages
	msgs  []message // of the batch

	written uint64 // bytes written on the current connection
	seq     uint32 // data records written on it (RFC 7011 §3.1)
	sent    []sentMessage
	winLen  int // bytes of payload held in sent
	spare   [][]byte
	// replay holds the messages of broken connections to send again on
	// the next one; replayNext is the other half of a double buffer.
	replay, replayNext []sentMessage
}

// errTransport marks an error of the connection, as opposed to a record
// that cannot be encoded.
type errTransport struct{ err error }

func (e errTransport) Error() string { return e.err.Error() }
func (e errTransport) Unwrap() error { return e.err }

// encodeBatch encodes recs into t.arena, counting and logging the records
// that cannot be encoded; it returns them as plugin.DroppedErrors (or nil).
func (e *Exporter) encodeBatch(recs []*flow.Record) error {
	t := &e.tcp
	t.arena, t.msgs = t.arena[:0], t.msgs[:0]
	err := e.enc.Encode(recs, time.Now(), func(msg []byte) error {
		t.msgs = append(t.msgs, message{off: len(t.arena), len: len(msg),
			records: e.enc.MessageRecords(), inputs: e.enc.MessageInputs()})
		t.arena = append(t.arena, msg...)
		return nil
	})
	drops := e.countEncodeErrors(err, len(recs))
	return drops
}

// countEncodeErrors counts the records Encode skipped, by reason, and
// returns them as plugin.DroppedErrors for the engine (nil when none).
// Encode reports each one as a joined error; n is the batch's length.
func (e *Exporter) countEncodeErrors(err error, n int) error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	reasons := [...]struct {
		sentinel error
		reason   string
		counter  *atomic.Uint64
		n        int
		first    error
	}{
		{ipfix.ErrRecordTooLarge, plugin.DropRecordTooLarge, &e.tooLarge, 0, nil},
		{ipfix.ErrEmptyRecord, plugin.DropEmptyRecord, &e.empty, 0, nil},
		{ipfix.ErrMalformed, dropMalformed, &e.malformed, 0, nil},
		{ipfix.ErrLimit, dropLimit, &e.limited, 0, nil},
	}
	for _, x := range errs {
		for i := range reasons {
			if r := &reasons[i]; errors.Is(x, r.sentinel) {
				if r.n == 0 {
					r.first = x
				}
				r.n++
				break
			}
		}
	}
	var drops []error
	dropped := 0
	for _, r := range reasons {
		if r.n > 0 {
			r.counter.Add(uint64(r.n))
			drops = append(drops, plugin.Dropped(r.reason, r.n, r.first))
			dropped += r.n
		}
	}
	if dropped > 0 {
		e.logLimited("records dropped: cannot be encoded", "address", e.cfg.Address, "records", dropped,
			"of", n, "max_message_size", e.maxMessageSize, "err", errs[0])
	}
	return errors.Join(drops...)
}

// exportTCP sends recs over TCP. A record that cannot be encoded is dropped
// and counted; only a transport error breaks the connection. After a break
// the exporter reconnects, sends every template, replays the messages the
// old connection had not acknowledged (from the resend window) and goes on
// with the batch from the first message not written.
//
// It returns the dropped records as plugin.DroppedErrors: those that cannot
// be encoded, and, when no connection can be made before ctx ends or
// Shutdown gives up, those not written (reason send_error).
func (e *Exporter) exportTCP(ctx context.Context, recs []*flow.Record) error {
	drops := e.encodeBatch(recs)
	t := &e.tcp
	for i := 0; i < len(t.msgs); {
		if err := e.connect(ctx); err != nil {
			records, rest := 0, 0
			for _, m := range t.msgs[i:] {
				records += m.records
				rest += m.inputs
			}
			e.recordsDropped.Add(uint64(records))
			return errors.Join(drops, plugin.Dropped(plugin.DropSendError, rest, fmt.Errorf("%s: %d records not sent: %w", ID, records, err)))
		}
		if e.fresh {
			e.fresh = false
			if err := e.replayAfterConnect(); err != nil {
				e.reset(err)
				continue
			}
		}
		m := t.msgs[i]
		if err := e.write(t.arena[m.off:m.off+m.len], m.records); err != nil {
			e.reset(err)
			continue
		}
		i++
	}
	e.trimAcked()
	return drops
}

// write writes one message on the connection, stamping the connection's
// sequence number, and keeps it in the resend window.
func (e *Exporter) write(msg []byte, records int) error {
	t := &e.tcp
	if e.broken.Load() {
		return errTransport{errors.New("collector closed the connection")}
	}
	binary.BigEndian.PutUint32(msg[8:], t.seq)
	_ = e.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := e.conn.Write(msg)
	t.written += uint64(n)
	if err != nil {
		return errTransport{err}
	}
	t.seq += uint32(records)
	e.records.Add(uint64(records))
	e.messages.Add(1)
	e.bytes.Add(uint64(len(msg)))
	e.track(msg, records)
	return nil
}

// track remembers a written message, keeping its bytes while the resend
// window has room.
func (e *Exporter) track(msg []byte, records int) {
	t := &e.tcp
	sm := sentMessage{end: t.written, records: records}
	if w := int(e.cfg.ResendWindow); w > 0 && len(msg) <= w {
		var buf []byte
		if n := len(t.spare); n > 0 && cap(t.spare[n-1]) >= len(msg) {
			buf, t.spare = t.spare[n-1][:len(msg)], t.spare[:n-1]
		} else {
			buf = make([]byte, len(msg))
		}
		copy(buf, msg)
		sm.buf = buf
		t.winLen += len(msg)
		// Evict the oldest payloads past the window.
		for i := 0; t.winLen > w && i < len(t.sent); i++ {
			e.release(&t.sent[i])
		}
	}
	if len(t.sent) >= maxTracked {
		e.release(&t.sent[0])
		t.sent = append(t.sent[:0], t.sent[1:]...)
	}
	t.sent = append(t.sent, sm)
}

func (e *Exporter) release(sm *sentMessage) {
	if sm.buf == nil {
		return
	}
	e.tcp.winLen -= len(sm.buf)
	if len(e.tcp.spare) < 64 {
		e.tcp.spare = append(e.tcp.spare, sm.buf)
	}
	sm.buf = nil
}

// trimAcked forgets the messages the collector has acknowledged (one
// getsockopt per batch).
func (e *Exporter) trimAcked() {
	acked, ok := bytesAcked(e.conn)
	if !ok {
		return
	}
	t := &e.tcp
	n := 0
	for n < len(t.sent) && t.sent[n].end <= acked {
		e.release(&t.sent[n])
		n++
	}
	if n > 0 {
		m := copy(t.sent, t.sent[n:])
		clear(t.sent[m:])
		t.sent = t.sent[:m]
	}
}

// reset handles a broken connection: the messages written on it that the
// collector had not acknowledged are queued to be replayed on the next
// one when their bytes are still in the resend window, and counted as
// possibly lost otherwise. Records the collector's kernel acknowledged but
// its process never read (a collector killed with data in its socket
// buffer) are lost without trace: TCP cannot tell.
func (e *Exporter) reset(cause error) {
	t := &e.tcp
	acked, ok := bytesAcked(e.conn)
	if !ok {
		acked = 0 // unknown: every tracked message may be unacknowledged
	}
	// The new replay list: this connection's unacknowledged messages, then
	// what an interrupted replay had not sent yet (older connections).
	next := t.replayNext[:0]
	lost, resend := 0, 0
	for i := range t.sent {
		sm := &t.sent[i]
		switch {
		case sm.end <= acked || sm.records == 0:
			e.release(sm) // acknowledged, or templates (always resent)
		case sm.buf != nil:
			next = append(next, *sm)
			resend += sm.records
		default:
			lost += sm.records
		}
	}
	for _, sm := range t.replay {
		next = append(next, sm)
		resend += sm.records
	}
	t.replay, t.replayNext = next, t.replay[:0]
	clear(t.sent)
	t.sent = t.sent[:0]
	t.winLen = 0
	for _, sm := range t.replay {
		t.winLen += len(sm.buf)
	}
	e.possiblyLost.Add(uint64(lost))
	e.sendErrors.Add(1)
	e.logLimited("tcp connection broken, reconnecting", "address", e.cfg.Address, "unacknowledged_records", lost+resend,
		"to_resend", resend, "possibly_lost", lost, "err", cause)
	e.closeConn()
	e.enc.Reset()
}

// replayAfterConnect sends every template, then the messages of the last
// connection that it had not acknowledged.
func (e *Exporter) replayAfterConnect() error {
	t := &e.tcp
	t.written, t.seq = 0, 0
	err := e.enc.EncodeTemplates(time.Now(), func(msg []byte) error {
		return e.write(msg, 0)
	})
	if err != nil {
		return err
	}
	for len(t.replay) > 0 {
		sm := t.replay[0]
		if err := e.write(sm.buf, sm.records); err != nil {
			return err
		}
		e.resent.Add(uint64(sm.records))
		// write kept a copy: recycle this one.
		t.winLen -= len(sm.buf)
		if len(t.spare) < 64 {
			t.spare = append(t.spare, sm.buf)
		}
		t.replay = t.replay[1:]
	}
	return nil
}

// abandon counts the records still waiting to be replayed as possibly lost
// (Shutdown).
func (e *Exporter) abandon() {
	t := &e.tcp
	n := 0
	for _, sm := range t.replay {
		n += sm.records
	}
	t.replay = t.replay[:0]
	if n > 0 {
		e.possiblyLost.Add(uint64(n))
		e.log.Warn("records not resent before shutdown: possibly lost", "address", e.cfg.Address, "records", n)
	}
}
