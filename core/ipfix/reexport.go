package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// Re-export: an Encoder given a raw record (AppendRaw: an IPFIX message as
// received) forwards the message's data records as an intermediate process
// (RFC 6183) without decoding them where it can. Each data template of each
// exporter's transport session and observation domain gets a template of
// the Encoder's own, with the original exporter IEs the raw record carries
// (originalExporterIPv4/IPv6Address and originalObservationDomainId, RFC
// 7119, set by the proxy processor) appended; each data record is copied
// byte for byte and the stamp appended. Records then travel in the
// Encoder's messages: its observation domain, sequence numbers, message
// size and template refresh, interleaved with typed records.
//
// What copying would get wrong is decoded and encoded as a typed record
// instead, by a Decoder the Encoder owns: records with sysUpTime or delta
// times (relative to the exporter's uptime or the message's export time),
// and data sets held until their template arrived. Options records are
// consumed, as source.ipfix consumes them. A template that already carries
// an original exporter address is copied without a stamp: the first
// proxy's values win, as the proxy processor's default.

// RawStats count what an Encoder did with raw records. They are safe to
// read from any goroutine.
type RawStats struct {
	Messages atomic.Uint64 // raw messages re-exported (even partly)
	// Copied counts data records copied with their template; Decoded,
	// those decoded and re-encoded as typed records (sysUpTime or delta
	// times, or held until their template came).
	Copied  atomic.Uint64
	Decoded atomic.Uint64
	// Malformed counts raw messages with a malformed part: the rest of
	// the message was forwarded (a message whose header is unusable is
	// reported by Encode instead).
	Malformed atomic.Uint64
	// Dropped counts data records of raw messages that could not be
	// forwarded: larger than MaxMessageSize, or nothing to encode.
	Dropped atomic.Uint64
	// SetsExpired counts data sets held for a template that never came
	// (within the decoder's pending TTL and limits) and dropped; their
	// records cannot be counted without it.
	SetsExpired atomic.Uint64
}

// rxTemplates is the Encoder's state for one decoder template: its re-export
// templates by stamp shape.
type rxTemplates struct {
	gen uint32
	out [6]*encTemplate
	// runs are the fixed bytes before each variable-length field and,
	// last, after the last one (variable-length templates only).
	runs []uint16
}

// Stamp shapes: bit 0 is originalObservationDomainId, bits 1-2 the
// original exporter address (1: IPv4, 2: IPv6).
const (
	stampDomain = 1
	stampV4     = 1 << 1
	stampV6     = 2 << 1
)

// rxState is an Encoder's re-export state.
type rxState struct {
	dec        *Decoder
	scratch    *flow.Batch
	stats      *RawStats
	lastExpire time.Time

	// The raw record being re-exported.
	stamp      [20]byte
	stampLen   int
	shape      uint8
	exportTime time.Time
	emit       func([]byte) error
	err        error // emit's: stops copying
	copied     int
	dropped    int
}

// rawSessionIdle forgets the templates of an exporter's session not heard
// from for this long. Templates do not expire otherwise: a raw record does
// not say whether it came over UDP or TCP.
const rawSessionIdle = 30 * time.Minute

// A re-exporter holds more data sets per session for their template than
// a source does: the pipeline's workers may hand it a batch of messages
// before the earlier batch that brought the template (at 1.5 M records/s,
// a 64-set window lost 128 sets at start). DefaultLimits still bound what
// every session and exporter holds.
const (
	rawPendingSets  = 4096
	rawPendingBytes = 4 << 20
)

// reexport forwards raw record r (index i of the batch). A message whose
// header is unusable is reported in errs; a non-nil result is emit's error.
func (e *Encoder) reexport(i int, r *flow.Record, exportTime time.Time, emit func([]byte) error, errs *[]error) error {
	x := &e.rx
	if x.dec == nil {
		x.dec = NewDecoder(DecoderOptions{
			SessionIdle:  rawSessionIdle,
			PendingSets:  rawPendingSets,
			PendingBytes: rawPendingBytes,
			Budget:       NewBudget(DefaultLimits()),
		})
		x.dec.copySet = e.copySet
		x.scratch = flow.NewBatch(0)
		x.stats = e.opts.RawStats
		if x.stats == nil {
			x.stats = new(RawStats)
		}
	}
	if exportTime.Sub(x.lastExpire) >= time.Second {
		x.dec.Expire()
		x.lastExpire = exportTime
	}
	defer func() { x.stats.SetsExpired.Store(x.dec.stats.PendingExpired.Load()) }()
	x.setStamp(r)
	x.exportTime, x.emit, x.err, x.copied, x.dropped = exportTime, emit, nil, 0, 0
	x.scratch.Reset()
	_, derr := x.dec.Decode(x.scratch, r.Extra[0].Value, r.Exporter)
	x.emit = nil
	x.stats.Copied.Add(uint64(x.copied))
	if x.err != nil {
		return x.err
	}
	if x.dec.st.s == nil {
		// Nothing of it could be read: its header (ErrMalformed), or a
		// limit refused its session (ErrLimit).
		*errs = append(*errs, fmt.Errorf("re-export record %d: %w", i, derr))
		return nil
	}
	x.stats.Messages.Add(1)
	if errors.Is(derr, ErrMalformed) {
		x.stats.Malformed.Add(1)
	}
	decodedDropped := 0
	for _, d := range x.scratch.Records {
		if !d.Present.Has(flow.OriginalExporterAddress) {
			if r.Present.Has(flow.OriginalExporterAddress) {
				d.OriginalExporterAddress = r.OriginalExporterAddress
				d.Present.Add(flow.OriginalExporterAddress)
			}
			if r.Present.Has(flow.OriginalObservationDomainID) {
				d.OriginalObservationDomainID = r.OriginalObservationDomainID
				d.Present.Add(flow.OriginalObservationDomainID)
			}
		}
		t, rl, err := e.encodeRecord(d, exportTime, emit)
		if err != nil {
			return err
		}
		if rl == 0 || t == nil {
			decodedDropped++
		}
	}
	decoded := x.scratch.Len() - decodedDropped
	if x.copied+decoded > 0 {
		e.ninputs++
	}
	x.stats.Decoded.Add(uint64(decoded))
	x.stats.Dropped.Add(uint64(x.dropped + decodedDropped))
	return nil
}

// setStamp prepares the original exporter IEs r carries, in template
// order: 403 or 404, then 405.
func (x *rxState) setStamp(r *flow.Record) {
	n, shape := 0, uint8(0)
	if r.Present.Has(flow.OriginalExporterAddress) && r.OriginalExporterAddress.IsValid() {
		if a := r.OriginalExporterAddress.Unmap(); a.Is4() {
			a4 := a.As4()
			n += copy(x.stamp[n:], a4[:])
			shape |= stampV4
		} else {
			a16 := a.As16()
			n += copy(x.stamp[n:], a16[:])
			shape |= stampV6
		}
	}
	if r.Present.Has(flow.OriginalObservationDomainID) {
		binary.BigEndian.PutUint32(x.stamp[n:], r.OriginalObservationDomainID)
		n += 4
		shape |= stampDomain
	}
	x.stampLen, x.shape = n, shape
}

// copySet copies the records of one data set of copyable template t into
// the current messages, each with the stamp appended. It is the decoder's
// copySet hook, so malformed data is reported the decoder's way.
func (e *Encoder) copySet(t *template, body []byte, setOff int) int {
	x := &e.rx
	if x.err != nil {
		return 0
	}
	shape, stamp := x.shape, x.stamp[:x.stampLen]
	if t.original {
		shape, stamp = 0, nil
	}
	out := e.rxTemplate(t, shape, len(stamp))
	if t.fixedLen == 0 && t.rx.runs == nil {
		t.rx.runs = fieldRuns(t)
	}
	maxLen := e.opts.MaxMessageSize
	p, n := 0, 0
	for len(body)-p >= t.minLen {
		rl := t.fixedLen
		if rl == 0 {
			if rl = recordExtent(t.rx.runs, body[p:]); rl < 0 {
				x.dec.stats.MalformedSets.Add(1)
				x.dec.fail(setOff, t.id, "data set ends in a partial record")
				break
			}
		}
		need := rl + len(stamp)
		if e.curSet != out.id || len(e.buf)+need > maxLen {
			ok, err := e.place(out, need, x.exportTime, x.emit)
			if err != nil {
				x.err = err
				return n
			}
			if !ok {
				x.dropped++
				p += rl
				continue
			}
		}
		e.buf = append(e.buf, body[p:p+rl]...)
		e.buf = append(e.buf, stamp...)
		e.nrec++
		p += rl
		n++
	}
	if n == 0 && p < len(body) && x.dropped == 0 {
		x.dec.stats.MalformedSets.Add(1)
		x.dec.fail(setOff, t.id, "data set shorter than record")
	}
	x.copied += n
	return n
}

// rxTemplate returns the re-export template of t with stamp shape shape,
// defining it on first use: t's fields, then the stamp's IEs.
func (e *Encoder) rxTemplate(t *template, shape uint8, stampLen int) *encTemplate {
	rx := &t.rx
	if rx.gen != e.gen {
		rx.out, rx.gen = [6]*encTemplate{}, e.gen
	}
	if o := rx.out[shape]; o != nil {
		return o
	}
	id, restarted := e.allocID()
	if restarted {
		rx.out, rx.gen = [6]*encTemplate{}, e.gen
	}
	specs := t.raw[4:] // after the template ID and field count
	count := len(t.ops)
	var extra [12]byte
	k := 0
	switch shape &^ stampDomain {
	case stampV4:
		binary.BigEndian.PutUint16(extra[k:], ieOriginalExporterIPv4)
		binary.BigEndian.PutUint16(extra[k+2:], 4)
		k += 4
		count++
	case stampV6:
		binary.BigEndian.PutUint16(extra[k:], ieOriginalExporterIPv6)
		binary.BigEndian.PutUint16(extra[k+2:], 16)
		k += 4
		count++
	}
	if shape&stampDomain != 0 {
		binary.BigEndian.PutUint16(extra[k:], ieOriginalDomainID)
		binary.BigEndian.PutUint16(extra[k+2:], 4)
		k += 4
		count++
	}
	o := &encTemplate{id: id, variable: t.fixedLen == 0}
	if t.fixedLen > 0 {
		o.fixedLen = t.fixedLen + stampLen
	}
	setLen := setHeaderLen + 4 + len(specs) + k
	o.set = make([]byte, 0, setLen)
	o.set = binary.BigEndian.AppendUint16(o.set, setIDTemplate)
	o.set = binary.BigEndian.AppendUint16(o.set, uint16(setLen))
	o.set = binary.BigEndian.AppendUint16(o.set, id)
	o.set = binary.BigEndian.AppendUint16(o.set, uint16(count))
	o.set = append(o.set, specs...)
	o.set = append(o.set, extra[:k]...)
	rx.out[shape] = o
	e.all = append(e.all, o)
	return o
}

// fieldRuns returns, for a template with variable-length fields, the fixed
// bytes before each variable-length field and after the last one.
func fieldRuns(t *template) []uint16 {
	runs := make([]uint16, 0, 4)
	run := 0
	for i := range t.ops {
		if l := t.ops[i].length; l != variableLength {
			run += int(l)
			continue
		}
		runs = append(runs, uint16(run))
		run = 0
	}
	return append(runs, uint16(run))
}

// recordExtent returns the length of the record at data[0] of a template
// with variable-length fields laid out as runs (fieldRuns), or -1 when it
// overruns data (RFC 7011 §7: a length byte, or 255 and two length bytes).
func recordExtent(runs []uint16, data []byte) int {
	p := 0
	last := len(runs) - 1
	for _, r := range runs[:last] {
		p += int(r)
		if p >= len(data) {
			return -1
		}
		n := int(data[p])
		p++
		if n == 255 {
			if len(data)-p < 2 {
				return -1
			}
			n = int(binary.BigEndian.Uint16(data[p:]))
			p += 2
		}
		p += n
	}
	p += int(runs[last])
	if p > len(data) {
		return -1
	}
	return p
}
