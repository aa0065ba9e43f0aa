package ipfix

import (
	"encoding/binary"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// Wire constants of RFC 7011.
const (
	version             = 10
	headerLen           = 16 // message header, §3.1
	setHeaderLen        = 4  // set header, §3.3.2
	setIDTemplate       = 2
	setIDOptions        = 3
	minDataSetID        = 256
	variableLength      = 0xffff
	enterpriseBit       = 0x8000
	maxFieldsPerRecord  = 16383 // a set body holds at most (65535-4-4)/4 specifiers
	ntpEpochOffset      = 2208988800
	microsecondFracMask = 0x7ff // §6.1.9: the low 11 bits of the fraction are not significant
)

// IANA element IDs with special handling.
const (
	ieFlowEndSysUpTime          = 21
	ieFlowStartSysUpTime        = 22
	ieFlowStartSeconds          = 150
	ieFlowEndSeconds            = 151
	ieFlowStartMilliseconds     = 152
	ieFlowEndMilliseconds       = 153
	ieFlowStartMicroseconds     = 154
	ieFlowEndMicroseconds       = 155
	ieFlowStartNanoseconds      = 156
	ieFlowEndNanoseconds        = 157
	ieFlowStartDeltaMicrosecond = 158
	ieFlowEndDeltaMicroseconds  = 159
	ieSystemInitTimeMillis      = 160
	ieOriginalExporterIPv4      = 403
	ieOriginalExporterIPv6      = 404
	ieOriginalDomainID          = 405
)

// opKind is what the data loop does with one template field.
type opKind uint8

const (
	opExtra  opKind = iota // copy verbatim into Record.Extra
	opUint                 // typed unsigned field, 1..8 bytes
	opAddr4                // typed address field, 4 bytes
	opAddr6                // typed address field, 16 bytes
	opString               // typed string field, interned
	opTime                 // flow start/end in one of the RFC time forms
	opInit                 // systemInitTimeMilliseconds: kept in Extra and used for sysUpTime

	// Direct stores into a verified slot (see slots.go).
	opSlotUint
	opSlotU8  // 1-byte IE into a 1-byte field
	opSlotU16 // 2-byte IE into a 2-byte field
	opSlotU32 // 4-byte IE into a 4-byte field
	opSlotU64 // 8-byte IE into an 8-byte field
	opSlotString
	opSlotAddr4
	opSlotAddr6
)

// timeForm is the encoding of a time op, ordered by resolution so that a
// finer form wins when a record carries several.
type timeForm uint8

const (
	formSeconds timeForm = iota + 1
	formSysUp
	formDelta
	formMillis
	formMicros
	formNanos
)

// op is one compiled template field.
type op struct {
	kind   opKind
	form   timeForm // opTime
	end    bool     // opTime: flowEnd rather than flowStart
	field  flow.FieldID
	length uint16 // template length; variableLength for §7 encoding
	elem   uint16
	ent    uint32
	off    uintptr // slot offset in flow.Record (opSlot*)
	// A fixed-length field lies pos bytes into its run, the fields between
	// two variable-length ones; the first field of a run begins it and
	// holds its length, run.
	pos    uint32
	run    uint32
	begins bool
	size   uint8 // slot bytes (opSlotUint)
	// last is the string this op decoded last: consecutive records often
	// repeat it (namespaces, node names), and comparing beats hashing.
	last string
}

// template is a compiled (options) template: a flat plan walked per record.
type template struct {
	id         uint16
	options    bool
	scopeCount int
	ops        []op
	minLen     int // shortest possible record (a variable field counts 1 byte)
	fixedLen   int // record length when every field is fixed, else 0
	hasSysUp   bool
	// copyable: a data template whose records mean the same in any message
	// (no sysUpTime or delta times), which a re-exporting Encoder copies
	// instead of decoding; original: it carries originalExporterIPv4/IPv6Address.
	copyable bool
	original bool
	rx       rxTemplates   // the re-exporting Encoder's templates for it
	present  flow.FieldSet // fields every record sets through slot ops
	raw      []byte        // wire form of the template record, to detect refreshes
	seen     time.Time
	cost     int64 // bytes accounted in the Budget
}

// fieldSpec is one field specifier of a template record (§3.2).
type fieldSpec struct {
	key    flow.IEKey
	length uint16
}

// compile builds the plan for a template's fields. unknown is called for
// every field whose IE is not in the registry; compile returns how many
// there were.
//
// It costs tens of nanoseconds per field: the ops are filled in place (an
// op holds a string, so copying one in would cost a write barrier) and IEs
// are classified through a dense table.
func compile(t *template, specs []fieldSpec, unknown func(flow.IEKey)) (unknowns int) {
	t.ops = make([]op, len(specs))
	fixed := true
	t.copyable = !t.options
	for i, s := range specs {
		o := &t.ops[i]
		o.length, o.elem, o.ent = s.length, s.key.Element, s.key.Enterprise
		c := classOf(s.key)
		classify(o, c)
		useSlot(o)
		if o.kind >= opSlotUint {
			t.present.Add(o.field)
		}
		if o.kind == opTime && (o.form == formSysUp) {
			t.hasSysUp = true
		}
		if o.kind == opTime && (o.form == formSysUp || o.form == formDelta) {
			t.copyable = false // relative to the exporter's uptime or the message's export time
		}
		if s.key.Enterprise == flow.IANA && (s.key.Element == ieOriginalExporterIPv4 || s.key.Element == ieOriginalExporterIPv6) {
			t.original = true
		}
		if s.length == variableLength {
			fixed = false
			t.minLen++
		} else {
			t.minLen += int(s.length)
		}
		if !c.known {
			unknowns++
			if unknown != nil {
				unknown(s.key)
			}
		}
	}
	if fixed {
		t.fixedLen = t.minLen
	}
	runs(t.ops)
	return unknowns
}

// runs sets the run fields of ops: the decoder checks a run's length once
// and reads its fields at their offsets.
func runs(ops []op) {
	first, pos := -1, uint32(0)
	for i := range ops {
		o := &ops[i]
		if o.length == variableLength {
			first = -1
			continue
		}
		if first < 0 {
			first, pos = i, 0
			o.begins = true
		}
		o.pos = pos
		pos += uint32(o.length)
		ops[first].run = pos
	}
}

// classify chooses the op kind of a field from its IE and template length;
// a typed field with a length that cannot hold it stays verbatim in Extra.
// c is the IE's class (classOf).
func classify(o *op, c ieClass) {
	l := o.length
	uintLen := l >= 1 && l <= 8
	o.kind = opExtra
	if o.ent == flow.IANA {
		switch o.elem {
		case ieFlowStartSeconds, ieFlowEndSeconds:
			if uintLen {
				o.kind, o.form, o.end = opTime, formSeconds, o.elem == ieFlowEndSeconds
			}
			return
		case ieFlowStartMilliseconds, ieFlowEndMilliseconds:
			if uintLen {
				o.kind, o.form, o.end = opTime, formMillis, o.elem == ieFlowEndMilliseconds
			}
			return
		case ieFlowStartMicroseconds, ieFlowEndMicroseconds:
			if l == 8 {
				o.kind, o.form, o.end = opTime, formMicros, o.elem == ieFlowEndMicroseconds
			}
			return
		case ieFlowStartNanoseconds, ieFlowEndNanoseconds:
			if l == 8 {
				o.kind, o.form, o.end = opTime, formNanos, o.elem == ieFlowEndNanoseconds
			}
			return
		case ieFlowStartSysUpTime, ieFlowEndSysUpTime:
			if uintLen {
				o.kind, o.form, o.end = opTime, formSysUp, o.elem == ieFlowEndSysUpTime
			}
			return
		case ieFlowStartDeltaMicrosecond, ieFlowEndDeltaMicroseconds:
			if uintLen {
				o.kind, o.form, o.end = opTime, formDelta, o.elem == ieFlowEndDeltaMicroseconds
			}
			return
		case ieSystemInitTimeMillis:
			if uintLen {
				o.kind = opInit
			}
			return
		}
	}
	if !c.typed {
		return
	}
	f := c.field
	info := &flow.Fields[f]
	o.field = f
	switch info.Kind {
	case flow.KindUnsigned:
		if uintLen {
			o.kind = opUint
		}
	case flow.KindString:
		o.kind = opString
	case flow.KindAddress:
		switch {
		case o.elem == info.Element && l == 4:
			o.kind = opAddr4
		case o.elem == info.Element6 && l == 16:
			o.kind = opAddr6
		}
	case flow.KindTime: // 152/153 are handled above; kept for future time fields
		if uintLen {
			o.kind, o.form, o.end = opTime, formMillis, f == flow.FlowEnd
		}
	}
}

// useSlot turns a setter op into a direct store into the field's slot.
func useSlot(o *op) {
	sl := flow.SlotOf(o.field)
	switch o.kind {
	case opUint:
		o.kind = opSlotUint
		if o.length == uint16(sl.Size) {
			switch sl.Size {
			case 1:
				o.kind = opSlotU8
			case 2:
				o.kind = opSlotU16
			case 4:
				o.kind = opSlotU32
			case 8:
				o.kind = opSlotU64
			}
		}
	case opString:
		o.kind = opSlotString
	case opAddr4:
		o.kind = opSlotAddr4
	case opAddr6:
		o.kind = opSlotAddr6
	default:
		return
	}
	o.off, o.size = sl.Offset, uint8(sl.Size)
}

// readUint reads a big-endian unsigned integer of 1..8 bytes (reduced-size
// encoding, RFC 7011 §6.2).
func readUint(v []byte) uint64 {
	switch len(v) {
	case 1:
		return uint64(v[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(v))
	case 4:
		return uint64(binary.BigEndian.Uint32(v))
	case 8:
		return binary.BigEndian.Uint64(v)
	}
	var x uint64
	for _, c := range v {
		x = x<<8 | uint64(c)
	}
	return x
}

// ntpToUnixNano converts an NTP timestamp (dateTimeMicroseconds or
// dateTimeNanoseconds, RFC 7011 §6.1.9/§6.1.10: seconds since 1900 and a
// 2^-32 s fraction) to nanoseconds since the Unix epoch.
func ntpToUnixNano(v []byte, micro bool) int64 {
	sec := int64(binary.BigEndian.Uint32(v))
	frac := uint64(binary.BigEndian.Uint32(v[4:]))
	if micro {
		// The fraction's low 11 bits are not significant: round to the µs.
		frac &^= microsecondFracMask
		return (sec-ntpEpochOffset)*1e9 + int64((frac*1e6+1<<31)>>32)*1e3
	}
	return (sec-ntpEpochOffset)*1e9 + int64((frac*1e9+1<<31)>>32)
}
