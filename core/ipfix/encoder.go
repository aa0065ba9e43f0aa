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
	// RawStats receives the counts of re-exported raw records; nil keeps
	// them private.
	RawStats *RawStats
}

// encKind is how one typed field is written.
type encKind uint8

const (
	encUint encKind = iota // any width, read through the slot's size
	encTime
	encAddr4
	encAddr6
	encString
	// Unsigned fields whose encoded width is their slot's size: one load,
	// one store.
	encU8
	encU16
	encU32
	encU64
)

type encField struct {
	kind  encKind
	field flow.FieldID
	width uint16
	off   uintptr // the field's offset in flow.Record (slots)
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
	variable bool   // the template has variable-length fields
	set      []byte // complete template set (header + one template record)
	sent     bool
	sentIn   uint64 // message number that last carried it
	lastSent time.Time
	next     *encTemplate // same key, different extras (hash collision)
}

// addrFields are the address fields, in the order of shapeKey.v6's bits.
var addrFields = [...]flow.FieldID{flow.SourceAddress, flow.DestinationAddress, flow.OriginalExporterAddress, flow.DestinationClusterIP}

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
	// The template of the previous record and its key: consecutive records
	// usually share a shape, and comparing the key beats hashing it.
	lastKey shapeKey
	lastT   *encTemplate
	all     []*encTemplate
	nextID  uint32
	gen     uint32 // bumped when template IDs start over
	rx      rxState

	buf      []byte
	msgNo    uint64
	seq      uint32 // data records sent before the current message (§3.1)
	nrec     uint32 // data records in the current message
	ninputs  uint32 // input records done in the current message (MessageInputs)
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
// A raw record (AppendRaw) is re-exported: its data records are copied
// with their templates and the original exporter IEs it carries appended
// (see RawStats). Its message counts as one record: a message whose header
// is unusable is reported with ErrMalformed, what goes wrong inside one is
// counted in RawStats.
//
// A record too large for one message is skipped and reported with
// ErrRecordTooLarge, an empty one with ErrEmptyRecord (joined); the others
// are encoded. An emit error stops
// encoding and is returned; templates are then resent by the next Encode.
func (e *Encoder) Encode(recs []*flow.Record, exportTime time.Time, emit func(msg []byte) error) error {
	var errs []error
	e.startMessage()
	for i, r := range recs {
		if isRaw(r) {
			if err := e.reexport(i, r, exportTime, emit, &errs); err != nil {
				return errors.Join(append(errs, err)...)
			}
			continue
		}
		t, rl, err := e.encodeRecord(r, exportTime, emit)
		switch {
		case err != nil:
			return errors.Join(append(errs, err)...)
		case rl == 0:
			errs = append(errs, fmt.Errorf("encode record %d: %w", i, ErrEmptyRecord))
		case t == nil:
			errs = append(errs, fmt.Errorf("encode record %d (%d bytes): %w", i, rl, ErrRecordTooLarge))
		default:
			e.ninputs++
		}
	}
	if e.nrec > 0 || len(e.buf) > headerLen {
		if err := e.flush(exportTime, emit); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	return errors.Join(errs...)
}

// encodeRecord writes r into the current message, emitting full messages
// on the way. It returns r's template and encoded length; rl == 0 means r
// is empty and t == nil that it does not fit in a message: both skip r. A
// non-nil error is emit's.
func (e *Encoder) encodeRecord(r *flow.Record, exportTime time.Time, emit func([]byte) error) (t *encTemplate, rl int, err error) {
	t = e.template(r)
	rl = recordLen(r, t)
	if rl == 0 {
		return t, 0, nil
	}
	ok, err := e.place(t, rl, exportTime, emit)
	if err != nil || !ok {
		return nil, rl, err
	}
	e.writeRecord(r, t, rl)
	e.nrec++
	return t, rl, nil
}

// place makes room in the current message for one record of rl bytes
// with template t: it emits the message when full, adds t's template set
// when due (first use, or TemplateRefresh) and opens t's data set. It
// returns false when the record cannot fit even in an empty message. A
// non-nil error is emit's.
func (e *Encoder) place(t *encTemplate, rl int, exportTime time.Time, emit func([]byte) error) (bool, error) {
	maxLen := e.opts.MaxMessageSize
	needT := e.needTemplate(t, exportTime)
	if e.opts.OneSetPerMessage && len(e.buf) > headerLen && (needT || e.curSet != t.id) {
		if err := e.flush(exportTime, emit); err != nil {
			return false, err
		}
		needT = e.needTemplate(t, exportTime)
	}
	if len(e.buf)+e.need(t, rl, needT) > maxLen && len(e.buf) > headerLen {
		if err := e.flush(exportTime, emit); err != nil {
			return false, err
		}
		needT = e.needTemplate(t, exportTime)
	}
	if len(e.buf)+e.need(t, rl, needT) > maxLen {
		return false, nil
	}
	if needT {
		e.closeSet()
		e.buf = append(e.buf, t.set...)
		t.sent, t.sentIn, t.lastSent = true, e.msgNo, exportTime
		if e.opts.OneSetPerMessage {
			if err := e.flush(exportTime, emit); err != nil {
				return false, err
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
	return true, nil
}

// MessageRecords returns the number of data records in the message being
// emitted; it is valid inside the emit function of [Encoder.Encode], so an
// exporter can count the records a failed send lost.
func (e *Encoder) MessageRecords() int { return int(e.nrec) }

// MessageInputs returns the number of Encode's input records that were
// done, having put data records in the messages, while the message being
// emitted was built: a typed record counts in the message that holds it,
// a raw record in the message its last data records went to. Like
// MessageRecords it is valid inside emit; an exporter reports the records
// a failed send lost to the engine, which counts input records, with it.
func (e *Encoder) MessageInputs() int { return int(e.ninputs) }

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
	e.nrec, e.ninputs = 0, 0
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

// typedShape returns r's present typed fields (strings set by assignment
// included, invalid addresses left out) and, in addrFields' order, which
// address fields hold IPv6 addresses.
func typedShape(r *flow.Record) (present flow.FieldSet, v6 uint8) {
	present = r.PresentSet()
	for i, f := range addrFields {
		if !present.Has(f) {
			continue
		}
		a := r.AddrRef(f)
		switch {
		case !a.IsValid():
			present.Remove(f)
		case a.Is6() && !a.Is4In6():
			v6 |= 1 << i
		}
	}
	return present, v6
}

// extrasHash hashes the identity and template length of r's Extra IEs.
func extrasHash(r *flow.Record) uint64 {
	h := uint64(14695981039346656037)
	for i := range r.Extra {
		x := &r.Extra[i]
		h ^= uint64(x.Enterprise)<<32 | uint64(x.Element)<<16 | uint64(extraLength(x))
		h *= 1099511628211
		h ^= h >> 29
	}
	return h
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
	present, v6 := typedShape(r)
	// Most records have the previous one's template: matches compares the
	// extras exactly, so their hash is only needed for a lookup.
	if t := e.lastT; t != nil && present == e.lastKey.present && v6 == e.lastKey.v6 && t.matches(r) {
		return t
	}
	k := shapeKey{present: present, v6: v6, nExtra: uint16(len(r.Extra)), hash: extrasHash(r)}
	t := e.lookup(k, r)
	e.lastKey, e.lastT = k, t
	return t
}

// lookup finds or creates the template of shape k.
func (e *Encoder) lookup(k shapeKey, r *flow.Record) *encTemplate {
	head := e.shapes[k]
	for t := head; t != nil; t = t.next {
		if t.matches(r) {
			return t
		}
	}
	id, restarted := e.allocID()
	if restarted {
		head = nil
	}
	t := newEncTemplate(id, k, r)
	t.next = head
	e.shapes[k] = t
	e.all = append(e.all, t)
	return t
}

// allocID returns the next free template ID. When IDs run out it starts
// over (restarted): every template is forgotten and IDs are redefined
// in-band; gen tells re-exported templates theirs are gone.
func (e *Encoder) allocID() (id uint16, restarted bool) {
	if e.nextID > 0xffff {
		clear(e.shapes)
		e.all = e.all[:0]
		e.lastT = nil
		e.nextID = minDataSetID
		e.gen++
		restarted = true
	}
	id = uint16(e.nextID)
	e.nextID++
	return id, restarted
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
			kind := encUint
			if info.Width == uint16(flow.SlotOf(f).Size) {
				switch info.Width {
				case 1:
					kind = encU8
				case 2:
					kind = encU16
				case 4:
					kind = encU32
				case 8:
					kind = encU64
				}
			}
			t.fields = append(t.fields, encField{kind: kind, field: f, width: info.Width, off: flow.SlotOf(f).Offset})
			spec(info.Enterprise, info.Element, info.Width)
			t.fixedLen += int(info.Width)
		case flow.KindTime:
			t.fields = append(t.fields, encField{kind: encTime, field: f, width: 8, off: flow.SlotOf(f).Offset})
			spec(info.Enterprise, info.Element, 8)
			t.fixedLen += 8
		case flow.KindString:
			t.fields = append(t.fields, encField{kind: encString, field: f, off: flow.SlotOf(f).Offset})
			t.variable = true
			spec(info.Enterprise, info.Element, variableLength)
		case flow.KindAddress:
			v6 := false
			for j, af := range addrFields {
				if af == f {
					v6 = k.v6&(1<<j) != 0
				}
			}
			if v6 {
				t.fields = append(t.fields, encField{kind: encAddr6, field: f, width: 16, off: flow.SlotOf(f).Offset})
				spec(info.Enterprise, info.Element6, 16)
				t.fixedLen += 16
			} else {
				t.fields = append(t.fields, encField{kind: encAddr4, field: f, width: 4, off: flow.SlotOf(f).Offset})
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
		} else {
			t.variable = true
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
	if !t.variable {
		return n
	}
	for _, f := range t.fields {
		if f.kind == encString {
			n += varLen(len(r.String(f.field)))
		}
	}
	for i, x := range t.extras {
		if x.length == variableLength {
			n += varLen(len(r.Extra[i].Value))
		}
	}
	return n
}

// writeRecord appends r, which needs rl bytes, with template t. The caller
// made sure the message has room, so the fields are stored in place.
func (e *Encoder) writeRecord(r *flow.Record, t *encTemplate, rl int) {
	n := len(e.buf)
	e.buf = e.buf[:n+rl]
	w := e.buf[n:]
	i := 0
	for _, f := range t.fields {
		switch f.kind {
		case encU8:
			w[i] = *flow.Uint8At(r, f.off)
			i++
		case encU16:
			binary.BigEndian.PutUint16(w[i:], *flow.Uint16At(r, f.off))
			i += 2
		case encU32:
			binary.BigEndian.PutUint32(w[i:], *flow.Uint32At(r, f.off))
			i += 4
		case encU64:
			binary.BigEndian.PutUint64(w[i:], *flow.Uint64At(r, f.off))
			i += 8
		case encTime:
			binary.BigEndian.PutUint64(w[i:], uint64(*flow.TimeAt(r, f.off)/1e6))
			i += 8
		case encAddr4:
			a := flow.AddrAt(r, f.off).Unmap().As4()
			copy(w[i:i+4], a[:])
			i += 4
		case encAddr6:
			a := flow.AddrAt(r, f.off).As16()
			copy(w[i:i+16], a[:])
			i += 16
		case encString:
			i = putVar(w, i, *flow.StringAt(r, f.off))
		default: // encUint
			v := r.Uint(f.field)
			switch f.width {
			case 1:
				w[i] = byte(v)
			case 2:
				binary.BigEndian.PutUint16(w[i:], uint16(v))
			case 4:
				binary.BigEndian.PutUint32(w[i:], uint32(v))
			default:
				binary.BigEndian.PutUint64(w[i:], v)
			}
			i += int(f.width)
		}
	}
	for k, x := range t.extras {
		v := r.Extra[k].Value
		if x.length == variableLength {
			i = putVar(w, i, v)
		} else {
			i += copy(w[i:], v)
		}
	}
}

// putVar stores v with its variable-length prefix (RFC 7011 §7) at w[i:]
// and returns the index after it.
func putVar[S string | []byte](w []byte, i int, v S) int {
	if len(v) < 255 {
		w[i] = byte(len(v))
		i++
	} else {
		w[i] = 255
		binary.BigEndian.PutUint16(w[i+1:], uint16(len(v)))
		i += 3
	}
	return i + copy(w[i:], v)
}
