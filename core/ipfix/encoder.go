package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// DefaultMaxMessageSize is the default bound of an encoded message: it keeps
// UDP datagrams within a 1500-byte path MTU.
const DefaultMaxMessageSize = 1400

// EncoderOptions tunes an Encoder.
type EncoderOptions struct {
	// ObservationDomainID is written in every message header.
	ObservationDomainID uint32
	// MaxMessageSize bounds a message in bytes (default 1400 for UDP path
	// MTU safety; up to 65535 for TCP).
	MaxMessageSize int
	// TemplateRefresh resends templates at least this often (UDP, RFC 7011
	// §8.4); 0 sends each template once (TCP).
	TemplateRefresh time.Duration
	// OneSetPerMessage puts every set (template or data) in a message of
	// its own. go-ipfix's collecting process, and so Antrea's Flow
	// Aggregator, decodes only the first set of a message.
	OneSetPerMessage bool
}

// encKind is how one typed field is written.
type encKind uint8

const (
	encUint encKind = iota
	encTime
	encAddr4
	encAddr6
	encString
)

type encField struct {
	kind  encKind
	field flow.FieldID
	width uint16
}

// extraSpec is one verbatim IE of a shape; length is variableLength for a
// variable-length IE.
type extraSpec struct {
	ent    uint32
	elem   uint16
	length uint16
}

// shapeKey identifies a record's template: its present typed fields, the
// family of each address field, and a hash of its Extra IEs (verified on
// hit).
type shapeKey struct {
	present flow.FieldSet
	v6      uint8
	nExtra  uint16
	hash    uint64
}

type encTemplate struct {
	id       uint16
	fields   []encField
	extras   []extraSpec
	fixedLen int    // bytes of the fixed-length fields
	set      []byte // complete template set (header + one template record)
	sent     bool
	sentIn   uint64 // message number that last carried it
	lastSent time.Time
	next     *encTemplate // same key, different extras (hash collision)
}

// addrFields are the address fields, in the order of shapeKey.v6's bits.
var addrFields = [...]flow.FieldID{flow.SourceAddress, flow.DestinationAddress, flow.OriginalExporterAddress, flow.DestinationClusterIP}

// stringFields are the typed string fields.
var stringFields = func() []flow.FieldID {
	var fs []flow.FieldID
	for i := range flow.Fields {
		if flow.Fields[i].Kind == flow.KindString {
			fs = append(fs, flow.FieldID(i))
		}
	}
	return fs
}()

// Encoder writes flow records as IPFIX messages with templates derived from
// the records' present fields and verbatim IEs. Not safe for concurrent use.
//
// # Notes
//   - A record's template ("shape") is its present typed fields, in FieldID
//     order at their canonical widths (addresses as the IPv4 or IPv6 IE by
//     family, times as flowStartMilliseconds/flowEndMilliseconds, strings
//     variable-length), then its Extra IEs in order, byte-identical.
//   - Template IDs count up from 256; when they run out, the shape cache is
//     cleared and IDs are reused (the templates are redefined in-band).
//   - Steady-state encoding allocates nothing.
type Encoder struct {
	opts   EncoderOptions
	shapes map[shapeKey]*encTemplate
	all    []*encTemplate
	nextID uint32

	buf      []byte
	msgNo    uint64
	seq      uint32 // data records sent before the current message (§3.1)
	nrec     uint32 // data records in the current message
	curSet   uint16 // template ID of the open data set, 0 if none
	setStart int
}

// NewEncoder returns an encoder.
func NewEncoder(opts EncoderOptions) *Encoder {
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	opts.MaxMessageSize = min(max(opts.MaxMessageSize, 256), 0xffff)
	return &Encoder{
		opts:   opts,
		shapes: make(map[shapeKey]*encTemplate),
		nextID: minDataSetID,
		buf:    make([]byte, 0, opts.MaxMessageSize),
	}
}

// Reset forgets which templates were sent and restarts the sequence number,
// so the next Encode resends them (a new TCP connection: a new transport
// session, RFC 7011 §3.1 and §8).
func (e *Encoder) Reset() {
	for _, t := range e.all {
		t.sent = false
	}
	e.seq = 0
}

// Encode encodes recs into one or more messages stamped with exportTime and
// calls emit for each, in order. The slice passed to emit is reused after
// emit returns. Records are written with the typed fields they have
// (canonical widths) and their Extra IEs byte-identical.
//
// A record too large for one message is skipped and reported with
// ErrRecordTooLarge, an empty one with ErrEmptyRecord (joined); the others
// are encoded. An emit error stops
// encoding and is returned; templates are then resent by the next Encode.
func (e *Encoder) Encode(recs []*flow.Record, exportTime time.Time, emit func(msg []byte) error) error {
	var errs []error
	e.startMessage()
	maxLen := e.opts.MaxMessageSize
	for i, r := range recs {
		t := e.template(r)
		rl := recordLen(r, t)
		if rl == 0 {
			errs = append(errs, fmt.Errorf("encode record %d: %w", i, ErrEmptyRecord))
			continue
		}
		needT := e.needTemplate(t, exportTime)
		if e.opts.OneSetPerMessage && len(e.buf) > headerLen && (needT || e.curSet != t.id) {
			if err := e.flush(exportTime, emit); err != nil {
				return errors.Join(append(errs, err)...)
			}
			needT = e.needTemplate(t, exportTime)
		}
		if len(e.buf)+e.need(t, rl, needT) > maxLen && len(e.buf) > headerLen {
			if err := e.flush(exportTime, emit); err != nil {
				return errors.Join(append(errs, err)...)
			}
			needT = e.needTemplate(t, exportTime)
		}
		if len(e.buf)+e.need(t, rl, needT) > maxLen {
			errs = append(errs, fmt.Errorf("encode record %d (%d bytes, template %d): %w", i, rl, t.id, ErrRecordTooLarge))
			continue
		}
		if needT {
			e.closeSet()
			e.buf = append(e.buf, t.set...)
			t.sent, t.sentIn, t.lastSent = true, e.msgNo, exportTime
			if e.opts.OneSetPerMessage {
				if err := e.flush(exportTime, emit); err != nil {
					return errors.Join(append(errs, err)...)
				}
			}
		}
		if e.curSet != t.id {
			e.closeSet()
			e.setStart = len(e.buf)
			e.buf = binary.BigEndian.AppendUint16(e.buf, t.id)
			e.buf = append(e.buf, 0, 0)
			e.curSet = t.id
		}
		e.writeRecord(r, t)
		e.nrec++
	}
	if e.nrec > 0 || len(e.buf) > headerLen {
		if err := e.flush(exportTime, emit); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	return errors.Join(errs...)
}

// EncodeTemplates encodes every template the encoder has defined into as
// few messages as MaxMessageSize allows and calls emit for each; the
// templates then count as sent. A new TCP connection that replays data
// messages encoded for an earlier one sends these first (RFC 7011 §8: a
// template precedes its data in each transport session).
func (e *Encoder) EncodeTemplates(exportTime time.Time, emit func(msg []byte) error) error {
	e.startMessage()
	for _, t := range e.all {
		if (e.opts.OneSetPerMessage || len(e.buf)+len(t.set) > e.opts.MaxMessageSize) && len(e.buf) > headerLen {
			if err := e.flush(exportTime, emit); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, t.set...)
		t.sent, t.sentIn, t.lastSent = true, e.msgNo, exportTime
	}
	if len(e.buf) > headerLen {
		return e.flush(exportTime, emit)
	}
	return nil
}

func (e *Encoder) needTemplate(t *encTemplate, now time.Time) bool {
	if t.sent && t.sentIn == e.msgNo {
		return false
	}
	if !t.sent {
		return true
	}
	return e.opts.TemplateRefresh > 0 && now.Sub(t.lastSent) >= e.opts.TemplateRefresh
}

// need is the bytes a record of t adds to the current message.
func (e *Encoder) need(t *encTemplate, rl int, needT bool) int {
	n := rl
	if needT {
		n += len(t.set) + setHeaderLen
	} else if e.curSet != t.id {
		n += setHeaderLen
	}
	return n
}

func (e *Encoder) startMessage() {
	e.buf = e.buf[:headerLen] // cap >= 256; the header is written by flush
	e.nrec = 0
	e.curSet = 0
}

func (e *Encoder) closeSet() {
	if e.curSet != 0 {
		binary.BigEndian.PutUint16(e.buf[e.setStart+2:], uint16(len(e.buf)-e.setStart))
		e.curSet = 0
	}
}

func (e *Encoder) flush(exportTime time.Time, emit func([]byte) error) error {
	e.closeSet()
	h := e.buf[:headerLen]
	binary.BigEndian.PutUint16(h[0:], version)
	binary.BigEndian.PutUint16(h[2:], uint16(len(e.buf)))
	binary.BigEndian.PutUint32(h[4:], uint32(exportTime.Unix()))
	binary.BigEndian.PutUint32(h[8:], e.seq)
	binary.BigEndian.PutUint32(h[12:], e.opts.ObservationDomainID)
	if err := emit(e.buf); err != nil {
		// The receiver may have missed templates: send them again.
		for _, t := range e.all {
			t.sent = false
		}
		e.msgNo++
		e.startMessage()
		return fmt.Errorf("emit ipfix message: %w", err)
	}
	e.seq += e.nrec
	e.msgNo++
	e.startMessage()
	return nil
}

// shape computes r's shape key.
func shapeOf(r *flow.Record) shapeKey {
	k := shapeKey{present: r.Present, nExtra: uint16(len(r.Extra))}
	for _, f := range stringFields {
		if !k.present.Has(f) && getString(r, f) != "" {
			k.present.Add(f)
		}
	}
	for i, f := range addrFields {
		if !k.present.Has(f) {
			continue
		}
		a := getAddr(r, f)
		switch {
		case !a.IsValid():
			k.present.Remove(f)
		case a.Is6() && !a.Is4In6():
			k.v6 |= 1 << i
		}
	}
	h := uint64(14695981039346656037)
	for i := range r.Extra {
		x := &r.Extra[i]
		h ^= uint64(x.Enterprise)<<32 | uint64(x.Element)<<16 | uint64(extraLength(x))
		h *= 1099511628211
		h ^= h >> 29
	}
	k.hash = h
	return k
}

// extraLength is the template length of a verbatim IE.
func extraLength(x *flow.Field) uint16 {
	if x.Variable || len(x.Value) >= variableLength {
		return variableLength
	}
	return uint16(len(x.Value))
}

func (t *encTemplate) matches(r *flow.Record) bool {
	if len(t.extras) != len(r.Extra) {
		return false
	}
	for i := range t.extras {
		x := &r.Extra[i]
		if t.extras[i] != (extraSpec{x.Enterprise, x.Element, extraLength(x)}) {
			return false
		}
	}
	return true
}

// template returns r's template, creating it on first use.
func (e *Encoder) template(r *flow.Record) *encTemplate {
	k := shapeOf(r)
	head := e.shapes[k]
	for t := head; t != nil; t = t.next {
		if t.matches(r) {
			return t
		}
	}
	if e.nextID > 0xffff {
		// Template IDs exhausted: start over, redefining IDs in-band.
		clear(e.shapes)
		e.all = e.all[:0]
		e.nextID = minDataSetID
		head = nil
	}
	t := newEncTemplate(uint16(e.nextID), k, r)
	e.nextID++
	t.next = head
	e.shapes[k] = t
	e.all = append(e.all, t)
	return t
}

func newEncTemplate(id uint16, k shapeKey, r *flow.Record) *encTemplate {
	t := &encTemplate{id: id}
	var specs []byte
	spec := func(ent uint32, elem, length uint16) {
		if ent != 0 {
			specs = binary.BigEndian.AppendUint16(specs, elem|enterpriseBit)
			specs = binary.BigEndian.AppendUint16(specs, length)
			specs = binary.BigEndian.AppendUint32(specs, ent)
			return
		}
		specs = binary.BigEndian.AppendUint16(specs, elem)
		specs = binary.BigEndian.AppendUint16(specs, length)
	}
	for i := range flow.Fields {
		f := flow.FieldID(i)
		if !k.present.Has(f) {
			continue
		}
		info := &flow.Fields[f]
		switch info.Kind {
		case flow.KindUnsigned:
			t.fields = append(t.fields, encField{kind: encUint, field: f, width: info.Width})
			spec(info.Enterprise, info.Element, info.Width)
			t.fixedLen += int(info.Width)
		case flow.KindTime:
			t.fields = append(t.fields, encField{kind: encTime, field: f, width: 8})
			spec(info.Enterprise, info.Element, 8)
			t.fixedLen += 8
		case flow.KindString:
			t.fields = append(t.fields, encField{kind: encString, field: f})
			spec(info.Enterprise, info.Element, variableLength)
		case flow.KindAddress:
			v6 := false
			for j, af := range addrFields {
				if af == f {
					v6 = k.v6&(1<<j) != 0
				}
			}
			if v6 {
				t.fields = append(t.fields, encField{kind: encAddr6, field: f, width: 16})
				spec(info.Enterprise, info.Element6, 16)
				t.fixedLen += 16
			} else {
				t.fields = append(t.fields, encField{kind: encAddr4, field: f, width: 4})
				spec(info.Enterprise, info.Element, 4)
				t.fixedLen += 4
			}
		}
	}
	for i := range r.Extra {
		x := &r.Extra[i]
		l := extraLength(x)
		t.extras = append(t.extras, extraSpec{x.Enterprise, x.Element, l})
		spec(x.Enterprise, x.Element, l)
		if l != variableLength {
			t.fixedLen += int(l)
		}
	}
	count := len(t.fields) + len(t.extras)
	t.set = make([]byte, 0, 8+len(specs))
	t.set = binary.BigEndian.AppendUint16(t.set, setIDTemplate)
	t.set = binary.BigEndian.AppendUint16(t.set, uint16(8+len(specs)))
	t.set = binary.BigEndian.AppendUint16(t.set, id)
	t.set = binary.BigEndian.AppendUint16(t.set, uint16(count))
	t.set = append(t.set, specs...)
	return t
}

// varLen is the encoded size of a variable-length value of n bytes (§7).
func varLen(n int) int {
	if n < 255 {
		return 1 + n
	}
	return 3 + n
}

// recordLen is the encoded size of r with template t.
func recordLen(r *flow.Record, t *encTemplate) int {
	n := t.fixedLen
	for _, f := range t.fields {
		if f.kind == encString {
			n += varLen(len(getString(r, f.field)))
		}
	}
	for i, x := range t.extras {
		if x.length == variableLength {
			n += varLen(len(r.Extra[i].Value))
		}
	}
	return n
}

func (e *Encoder) writeRecord(r *flow.Record, t *encTemplate) {
	b := e.buf
	for _, f := range t.fields {
		switch f.kind {
		case encUint:
			v := getUint(r, f.field)
			switch f.width {
			case 1:
				b = append(b, byte(v))
			case 2:
				b = binary.BigEndian.AppendUint16(b, uint16(v))
			case 4:
				b = binary.BigEndian.AppendUint32(b, uint32(v))
			default:
				b = binary.BigEndian.AppendUint64(b, v)
			}
		case encTime:
			b = binary.BigEndian.AppendUint64(b, uint64(int64(getUint(r, f.field))/1e6))
		case encAddr4:
			a := getAddr(r, f.field).Unmap().As4()
			b = append(b, a[:]...)
		case encAddr6:
			a := getAddr(r, f.field).As16()
			b = append(b, a[:]...)
		case encString:
			b = appendVar(b, getString(r, f.field))
		}
	}
	for i, x := range t.extras {
		v := r.Extra[i].Value
		if x.length == variableLength {
			b = appendVar(b, v)
		} else {
			b = append(b, v...)
		}
	}
	e.buf = b
}

func appendVar[S string | []byte](b []byte, v S) []byte {
	if len(v) < 255 {
		b = append(b, byte(len(v)))
	} else {
		b = append(b, 255)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	}
	return append(b, v...)
}
