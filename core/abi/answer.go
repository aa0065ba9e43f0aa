package abi

import (
	"github.com/weir-flow/weir/core/flow"
)

// Status is a plugin's outcome for a call.
type Status uint32

const (
	// StatusOK: the call succeeded.
	StatusOK Status = 0
	// StatusError: the plugin refused the call (for init, the config); the
	// message says why.
	StatusError Status = 1
	// StatusPanic: the plugin panicked and the SDK recovered; the message
	// holds the panic value. The host treats the instance as broken.
	StatusPanic Status = 2
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusError:
		return "error"
	case StatusPanic:
		return "panic"
	}
	return "status(" + itoa(int(s)) + ")"
}

// Verdicts is a keep/drop bitmap: bit i%64 of word i/64 keeps record i. It
// is the argument of [flow.Batch.RetainMask].
type Verdicts []uint64

// Words returns how many words hold n verdicts.
func Words(n int) int { return (n + 63) / 64 }

// KeepAll returns v resized for n records, all kept, reusing v's capacity.
func (v Verdicts) KeepAll(n int) Verdicts {
	w := Words(n)
	if cap(v) < w {
		v = make(Verdicts, w)
	}
	v = v[:w]
	for i := range v {
		v[i] = ^uint64(0)
	}
	if r := n & 63; r != 0 {
		v[w-1] = 1<<r - 1
	}
	return v
}

// Keep reports whether record i is kept.
func (v Verdicts) Keep(i int) bool { return i>>6 < len(v) && v[i>>6]&(1<<(i&63)) != 0 }

// Set keeps (keep true) or drops record i; i must be within v.
func (v Verdicts) Set(i int, keep bool) {
	if keep {
		v[i>>6] |= 1 << (i & 63)
	} else {
		v[i>>6] &^= 1 << (i & 63)
	}
}

// Answer layout: byte offsets from the start of an answer buffer.
const (
	aMagic       = 0  // u32 MagicAnswer
	aVersion     = 4  // u16 ABI version
	aHeaderSize  = 6  // u16 AnswerHeaderSize
	aStatus      = 8  // u32 Status
	aCount       = 12 // u32 records the answer covers
	aVerdictOff  = 16 // u32 offset of the verdict words
	aVerdictLen  = 20 // u32 number of verdict words (u64)
	aUpdatesOff  = 24 // u32 offset of the updates
	aUpdatesLen  = 28 // u32 length of the updates in bytes
	aUpdateCount = 32 // u32 number of updates
	aMessageOff  = 36 // u32 offset of the UTF-8 message
	aMessageLen  = 40 // u32 length of the message
	aReserved    = 44 // u32 zero

	// AnswerHeaderSize is the size of the answer header in bytes.
	AnswerHeaderSize = 48
)

// Answer is a plugin's reply to one batch.
type Answer struct {
	// Status is StatusOK, or why the batch was not processed.
	Status Status
	// Count is the number of records in the batch answered.
	Count int
	// Verdicts keeps or drops each record; a filter sets it, an enricher
	// keeps every record.
	Verdicts Verdicts
	// Updates are the encoded field updates ([Updates.Bytes]), in the order
	// they apply; UpdateCount is how many.
	Updates     []byte
	UpdateCount int
	// Message explains a status other than StatusOK.
	Message string
}

// Append appends the encoding of a to dst.
func (a *Answer) Append(dst []byte) []byte {
	start := len(dst)
	w := Words(a.Count)
	dst = extend(dst, AnswerHeaderSize+8*w)
	vo := AnswerHeaderSize
	for i := range w {
		var word uint64
		if i < len(a.Verdicts) {
			word = a.Verdicts[i]
		}
		le.PutUint64(dst[start+vo+8*i:], word)
	}
	uo := len(dst) - start
	dst = append(dst, a.Updates...)
	mo := len(dst) - start
	dst = append(dst, a.Message...)
	h := dst[start : start+AnswerHeaderSize]
	le.PutUint32(h[aMagic:], MagicAnswer)
	le.PutUint16(h[aVersion:], Version)
	le.PutUint16(h[aHeaderSize:], AnswerHeaderSize)
	le.PutUint32(h[aStatus:], uint32(a.Status))
	le.PutUint32(h[aCount:], uint32(a.Count))
	le.PutUint32(h[aVerdictOff:], uint32(vo))
	le.PutUint32(h[aVerdictLen:], uint32(w))
	le.PutUint32(h[aUpdatesOff:], uint32(uo))
	le.PutUint32(h[aUpdatesLen:], uint32(len(a.Updates)))
	le.PutUint32(h[aUpdateCount:], uint32(a.UpdateCount))
	le.PutUint32(h[aMessageOff:], uint32(mo))
	le.PutUint32(h[aMessageLen:], uint32(len(a.Message)))
	le.PutUint32(h[aReserved:], 0)
	return dst
}

// answerParts are the sections of an ABI answer, checked against its size.
type answerParts struct {
	status      Status
	count       uint64
	verdicts    []byte // count's verdict words, little-endian
	updates     []byte
	updateCount int
	message     []byte
}

// parseAnswer checks an ABI answer's header and section bounds.
func parseAnswer(buf []byte) (answerParts, error) {
	if len(buf) < AnswerHeaderSize {
		return answerParts{}, malformed("answer of %d bytes is shorter than its %d-byte header", len(buf), AnswerHeaderSize)
	}
	if m := le.Uint32(buf[aMagic:]); m != MagicAnswer {
		return answerParts{}, malformed("answer magic %#08x, want %#08x or %#08x", m, MagicAnswer, MagicCompact)
	}
	if err := CheckVersion(le.Uint16(buf[aVersion:])); err != nil {
		return answerParts{}, err
	}
	count := uint64(le.Uint32(buf[aCount:]))
	vo, vw := uint64(le.Uint32(buf[aVerdictOff:])), uint64(le.Uint32(buf[aVerdictLen:]))
	uo, ul := uint64(le.Uint32(buf[aUpdatesOff:])), uint64(le.Uint32(buf[aUpdatesLen:]))
	mo, ml := uint64(le.Uint32(buf[aMessageOff:])), uint64(le.Uint32(buf[aMessageLen:]))
	hs := uint64(le.Uint16(buf[aHeaderSize:]))
	size := uint64(len(buf))
	switch {
	case hs < AnswerHeaderSize:
		return answerParts{}, malformed("answer header size %d, want at least %d", hs, AnswerHeaderSize)
	case vw != (count+63)/64:
		return answerParts{}, malformed("answer has %d verdict words for %d records, want %d", vw, count, (count+63)/64)
	case vo < hs || vo+8*vw > size:
		return answerParts{}, malformed("answer verdicts %d+%d beyond the %d-byte answer", vo, 8*vw, size)
	case uo < hs || uo+ul > size:
		return answerParts{}, malformed("answer updates %d+%d beyond the %d-byte answer", uo, ul, size)
	case mo < hs || mo+ml > size:
		return answerParts{}, malformed("answer message %d+%d beyond the %d-byte answer", mo, ml, size)
	}
	return answerParts{
		status:      Status(le.Uint32(buf[aStatus:])),
		count:       count,
		verdicts:    buf[vo : vo+8*vw : vo+8*vw],
		updates:     buf[uo : uo+ul : uo+ul],
		updateCount: int(le.Uint32(buf[aUpdateCount:])),
		message:     buf[mo : mo+ml : mo+ml],
	}, nil
}

// DecodeAnswer parses the ABI answer buf into a, for inspection (hosts use
// [Apply]), reusing a.Verdicts' capacity. a.Updates points into buf. It
// returns an error wrapping ErrMalformed (or a *VersionError) for a buffer
// that does not follow the layout, including updates whose entries do not
// add up.
func DecodeAnswer(buf []byte, a *Answer) error {
	p, err := parseAnswer(buf)
	if err != nil {
		return err
	}
	a.Status = p.status
	a.Count = int(p.count)
	vw := len(p.verdicts) / 8
	if cap(a.Verdicts) < vw {
		a.Verdicts = make(Verdicts, vw)
	}
	a.Verdicts = a.Verdicts[:vw]
	for i := range a.Verdicts {
		a.Verdicts[i] = le.Uint64(p.verdicts[8*i:])
	}
	a.Updates = p.updates
	a.UpdateCount = p.updateCount
	a.Message = string(p.message)
	return checkUpdates(a.Updates, a.UpdateCount, a.Count)
}

// PluginError is a plugin's refusal or recovered panic, carrying its own
// message.
type PluginError struct {
	Status  Status
	Message string
}

func (e *PluginError) Error() string {
	if e.Message == "" {
		return "plugin answered " + e.Status.String()
	}
	return e.Message
}

// Kind is what a plugin does with a batch.
type Kind uint32

const (
	// KindFilter keeps or drops records.
	KindFilter Kind = 1
	// KindEnricher modifies records and keeps them all.
	KindEnricher Kind = 2
	// KindProcessor both modifies and drops records.
	KindProcessor Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindFilter:
		return "filter"
	case KindEnricher:
		return "enricher"
	case KindProcessor:
		return "processor"
	}
	return "kind(" + itoa(int(k)) + ")"
}

// Manifest layout: byte offsets from the start of a manifest buffer.
const (
	mMagic      = 0  // u32 MagicManifest
	mVersion    = 4  // u16 ABI version of the plugin
	mHeaderSize = 6  // u16 ManifestSize
	mStatus     = 8  // u32 Status of init
	mKind       = 12 // u32 Kind
	mFlags      = 16 // u32 Mask flags the plugin reads
	mReserved   = 20 // u32 zero
	mFields     = 24 // [2]u64 typed fields the plugin reads
	mMessageOff = 40 // u32 offset of the UTF-8 message
	mMessageLen = 44 // u32 length of the message

	// ManifestSize is the size of the manifest header in bytes.
	ManifestSize = 48
)

// Manifest is a plugin's answer to init: whether it accepts its config,
// what kind it is and what parts of a record it reads.
type Manifest struct {
	// Version is the plugin's ABI version.
	Version uint16
	// Status is StatusOK, or StatusError with Message when the plugin
	// rejects its config.
	Status  Status
	Message string
	Kind    Kind
	// Reads is what the plugin reads of each record; the host encodes only
	// that.
	Reads Mask
}

// Append appends the encoding of m to dst.
func (m *Manifest) Append(dst []byte) []byte {
	start := len(dst)
	dst = extend(dst, ManifestSize)
	dst = append(dst, m.Message...)
	h := dst[start : start+ManifestSize]
	le.PutUint32(h[mMagic:], MagicManifest)
	le.PutUint16(h[mVersion:], m.Version)
	le.PutUint16(h[mHeaderSize:], ManifestSize)
	le.PutUint32(h[mStatus:], uint32(m.Status))
	le.PutUint32(h[mKind:], uint32(m.Kind))
	le.PutUint32(h[mFlags:], m.Reads.Flags)
	le.PutUint32(h[mReserved:], 0)
	le.PutUint64(h[mFields:], m.Reads.Fields[0])
	le.PutUint64(h[mFields+8:], m.Reads.Fields[1])
	le.PutUint32(h[mMessageOff:], ManifestSize)
	le.PutUint32(h[mMessageLen:], uint32(len(m.Message)))
	return dst
}

// DecodeManifest parses a manifest. It returns a *VersionError when the
// plugin's ABI version is not supported, and an error wrapping ErrMalformed
// for a buffer that does not follow the layout or names an unknown kind.
func DecodeManifest(buf []byte) (Manifest, error) {
	if len(buf) < ManifestSize {
		return Manifest{}, malformed("manifest of %d bytes is shorter than its %d-byte header", len(buf), ManifestSize)
	}
	if m := le.Uint32(buf[mMagic:]); m != MagicManifest {
		return Manifest{}, malformed("manifest magic %#08x, want %#08x", m, MagicManifest)
	}
	m := Manifest{Version: le.Uint16(buf[mVersion:])}
	if err := CheckVersion(m.Version); err != nil {
		return m, err
	}
	mo, ml := uint64(le.Uint32(buf[mMessageOff:])), uint64(le.Uint32(buf[mMessageLen:]))
	if mo < ManifestSize || mo+ml > uint64(len(buf)) {
		return m, malformed("manifest message %d+%d beyond the %d-byte manifest", mo, ml, len(buf))
	}
	m.Status = Status(le.Uint32(buf[mStatus:]))
	m.Kind = Kind(le.Uint32(buf[mKind:]))
	m.Reads = Mask{
		Fields: flow.FieldSet{le.Uint64(buf[mFields:]), le.Uint64(buf[mFields+8:])},
		Flags:  le.Uint32(buf[mFlags:]),
	}.normalize()
	m.Message = string(buf[mo : mo+ml])
	if m.Status == StatusOK && (m.Kind < KindFilter || m.Kind > KindProcessor) {
		return m, malformed("manifest kind %d", uint32(m.Kind))
	}
	return m, nil
}
