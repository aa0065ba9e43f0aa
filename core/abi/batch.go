package abi

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

var le = binary.LittleEndian

// AppendBatch appends the ABI v1 encoding of every part of every record of
// b to dst and returns the extended buffer. With a dst whose capacity
// suffices (a buffer reused from the previous batch) it does not allocate.
//
// Strings, Extra IEs and the Exporter's zone are not interpreted: strings
// and Extra values are copied byte for byte; zones are dropped.
func AppendBatch(dst []byte, b *flow.Batch) []byte {
	return AppendBatchMask(dst, b, All)
}

// AppendBatchMask is [AppendBatch] limited to the parts of each record in
// m, which a plugin declares in its [Manifest]. Encoding a few fields costs
// a few nanoseconds per record; the bytes of fields outside m are left
// unspecified (whatever dst held), and decoders ignore them.
func AppendBatchMask(dst []byte, b *flow.Batch, m Mask) []byte {
	var e Encoder
	return e.Append(dst, b, m)
}

// Encoder is [AppendBatchMask] for a stream of batches: it keeps the
// layout it computed for the last mask and batch size, which a host that
// sends small batches would otherwise pay for on every call. The zero
// value is ready to use; an Encoder is not safe for concurrent use.
type Encoder struct {
	plan    plan
	mask    Mask
	records int
	planned bool
}

// Append appends the encoding of the parts in m of every record of b to
// dst, as AppendBatchMask does.
func (e *Encoder) Append(dst []byte, b *flow.Batch, m Mask) []byte {
	m = m.normalize()
	if m.Columns() {
		return e.appendColumns(dst, b, m)
	}
	n := len(b.Records)
	start := len(dst)
	dataStart := start + BatchHeaderSize + n*RecordSize
	dst = extend(dst, dataStart-start)

	if m.IsAll() && unrolled {
		for i, r := range b.Records {
			dst = encodeFull(dst, start+BatchHeaderSize+i*RecordSize, dataStart, r)
		}
	} else {
		pl := e.planFor(m, 0)
		for i, r := range b.Records {
			dst = encodeMasked(dst, start+BatchHeaderSize+i*RecordSize, dataStart, r, m, pl)
		}
	}

	putHeader(dst[start:start+BatchHeaderSize], header{
		Count: uint32(n), RecordSize: uint32(RecordSize), RecordsOff: BatchHeaderSize,
		DataOff: uint32(dataStart - start), DataLen: uint32(len(dst) - dataStart), Flags: m.Flags, Fields: m.Fields,
	})
	return dst
}

// extend grows dst by k bytes, whose content is unspecified.
func extend(dst []byte, k int) []byte {
	dst = slices.Grow(dst, k)
	return dst[:len(dst)+k]
}

// encodeFull writes record r, every part, into the block at blk.
func encodeFull(dst []byte, blk, dataStart int, r *flow.Record) []byte {
	p := dst[blk : blk+unrolledSize]
	putPrelude(p, r, FlagExporter)
	putAddr(p[oSourceAddress:], r.SourceAddress)
	putAddr(p[oDestinationAddress:], r.DestinationAddress)
	le.PutUint16(p[oSourceTransportPort:], r.SourceTransportPort)
	le.PutUint16(p[oDestinationTransportPort:], r.DestinationTransportPort)
	p[oProtocolIdentifier] = r.ProtocolIdentifier
	p[oIPClassOfService] = r.IPClassOfService
	le.PutUint16(p[oTCPControlBits:], r.TCPControlBits)
	p[oFlowEndReason] = r.FlowEndReason
	le.PutUint32(p[oIngressInterface:], r.IngressInterface)
	le.PutUint32(p[oEgressInterface:], r.EgressInterface)
	le.PutUint64(p[oFlowStart:], uint64(r.FlowStart))
	le.PutUint64(p[oFlowEnd:], uint64(r.FlowEnd))
	le.PutUint64(p[oOctetDeltaCount:], r.OctetDeltaCount)
	le.PutUint64(p[oPacketDeltaCount:], r.PacketDeltaCount)
	le.PutUint64(p[oOctetTotalCount:], r.OctetTotalCount)
	le.PutUint64(p[oPacketTotalCount:], r.PacketTotalCount)
	le.PutUint64(p[oReverseOctetDeltaCount:], r.ReverseOctetDeltaCount)
	le.PutUint64(p[oReversePacketDeltaCount:], r.ReversePacketDeltaCount)
	le.PutUint64(p[oReverseOctetTotalCount:], r.ReverseOctetTotalCount)
	le.PutUint64(p[oReversePacketTotalCount:], r.ReversePacketTotalCount)
	putAddr(p[oOriginalExporterAddress:], r.OriginalExporterAddress)
	le.PutUint32(p[oOriginalObservationDomainID:], r.OriginalObservationDomainID)
	putAddr(p[oDestinationClusterIP:], r.DestinationClusterIP)
	le.PutUint16(p[oDestinationServicePort:], r.DestinationServicePort)
	p[oIngressNetworkPolicyRuleAction] = r.IngressNetworkPolicyRuleAction
	p[oIngressNetworkPolicyType] = r.IngressNetworkPolicyType
	p[oEgressNetworkPolicyRuleAction] = r.EgressNetworkPolicyRuleAction
	p[oEgressNetworkPolicyType] = r.EgressNetworkPolicyType
	p[oFlowType] = r.FlowType

	// Strings and Extra IEs append to dst, which may move it: from here on
	// the block is addressed through dst.
	present := r.Present
	dst = putString(dst, blk+oSourcePodNamespace, dataStart, r.SourcePodNamespace, &present, flow.SourcePodNamespace)
	dst = putString(dst, blk+oSourcePodName, dataStart, r.SourcePodName, &present, flow.SourcePodName)
	dst = putString(dst, blk+oDestinationPodNamespace, dataStart, r.DestinationPodNamespace, &present, flow.DestinationPodNamespace)
	dst = putString(dst, blk+oDestinationPodName, dataStart, r.DestinationPodName, &present, flow.DestinationPodName)
	dst = putString(dst, blk+oSourceNodeName, dataStart, r.SourceNodeName, &present, flow.SourceNodeName)
	dst = putString(dst, blk+oDestinationNodeName, dataStart, r.DestinationNodeName, &present, flow.DestinationNodeName)
	dst = putString(dst, blk+oDestinationServicePortName, dataStart, r.DestinationServicePortName, &present, flow.DestinationServicePortName)
	dst = putString(dst, blk+oIngressNetworkPolicyName, dataStart, r.IngressNetworkPolicyName, &present, flow.IngressNetworkPolicyName)
	dst = putString(dst, blk+oIngressNetworkPolicyNamespace, dataStart, r.IngressNetworkPolicyNamespace, &present, flow.IngressNetworkPolicyNamespace)
	dst = putString(dst, blk+oIngressNetworkPolicyRuleName, dataStart, r.IngressNetworkPolicyRuleName, &present, flow.IngressNetworkPolicyRuleName)
	dst = putString(dst, blk+oEgressNetworkPolicyName, dataStart, r.EgressNetworkPolicyName, &present, flow.EgressNetworkPolicyName)
	dst = putString(dst, blk+oEgressNetworkPolicyNamespace, dataStart, r.EgressNetworkPolicyNamespace, &present, flow.EgressNetworkPolicyNamespace)
	dst = putString(dst, blk+oEgressNetworkPolicyRuleName, dataStart, r.EgressNetworkPolicyRuleName, &present, flow.EgressNetworkPolicyRuleName)
	dst = putString(dst, blk+oTCPState, dataStart, r.TCPState, &present, flow.TCPState)
	dst = putString(dst, blk+oEgressNodeName, dataStart, r.EgressNodeName, &present, flow.EgressNodeName)
	dst = putString(dst, blk+oSourcePodLabels, dataStart, r.SourcePodLabels, &present, flow.SourcePodLabels)
	dst = putString(dst, blk+oDestinationPodLabels, dataStart, r.DestinationPodLabels, &present, flow.DestinationPodLabels)
	le.PutUint64(dst[blk+rPresent:], present[0]&All.Fields[0])
	le.PutUint64(dst[blk+rPresent+8:], present[1]&All.Fields[1])
	return AppendExtra(dst, blk+rExtraOff, dataStart, r.Extra)
}

// encodeMasked writes the parts of r selected by m (listed in pl) into
// the block at blk.
func encodeMasked(dst []byte, blk, dataStart int, r *flow.Record, m Mask, pl *plan) []byte {
	putPrelude(dst[blk:blk+RecordSize], r, m.Flags)
	present := r.Present
	for i := range pl.n {
		it := &pl.items[i]
		off := blk + int(it.block)
		switch it.kind {
		case flow.KindAddress:
			putAddr(dst[off:off+addrSize], r.Addr(it.field))
		case flow.KindString:
			dst = putString(dst, off, dataStart, r.String(it.field), &present, it.field)
		default:
			putUint(dst[off:off+int(it.size)], r.Uint(it.field))
		}
	}
	le.PutUint64(dst[blk+rPresent:], present[0]&m.Fields[0])
	le.PutUint64(dst[blk+rPresent+8:], present[1]&m.Fields[1])
	if m.Flags&FlagExtra == 0 {
		return dst
	}
	return AppendExtra(dst, blk+rExtraOff, dataStart, r.Extra)
}

// appendColumns is AppendBatchMask for the columnar layout.
func (e *Encoder) appendColumns(dst []byte, b *flow.Batch, m Mask) []byte {
	n := len(b.Records)
	start := len(dst)
	pl := e.planFor(m, n)
	recs := start + BatchHeaderSize
	dataStart := recs + pl.size
	dst = extend(dst, dataStart-start)
	if pl.scalar && littleEndian {
		encodeScalarColumns(dst[recs:dataStart], b, m, pl)
	} else {
		for i, r := range b.Records {
			dst = encodeColumns(dst, recs, dataStart, i, r, m, pl)
		}
	}
	putHeader(dst[start:start+BatchHeaderSize], header{
		Count: uint32(n), RecordSize: 0, RecordsOff: BatchHeaderSize, // no record blocks
		DataOff: uint32(dataStart - start), DataLen: uint32(len(dst) - dataStart), Flags: m.Flags, Fields: m.Fields,
	})
	return dst
}

// putHeader writes h, with the magic, version and header size of this
// build, at the start of p.
func putHeader(p []byte, h header) {
	_ = p[BatchHeaderSize-1]
	h.Magic, h.Version, h.HeaderSize = MagicBatch, Version, BatchHeaderSize
	if littleEndian {
		*(*header)(unsafe.Pointer(unsafe.SliceData(p))) = h
		return
	}
	le.PutUint32(p[hMagic:], h.Magic)
	le.PutUint16(p[hVersion:], h.Version)
	le.PutUint16(p[hHeaderSize:], h.HeaderSize)
	le.PutUint32(p[hCount:], h.Count)
	le.PutUint32(p[hRecordSize:], h.RecordSize)
	le.PutUint32(p[hRecordsOff:], h.RecordsOff)
	le.PutUint32(p[hDataOff:], h.DataOff)
	le.PutUint32(p[hDataLen:], h.DataLen)
	le.PutUint32(p[hFlags:], h.Flags)
	le.PutUint64(p[hFields:], h.Fields[0])
	le.PutUint64(p[hFieldsWord1:], h.Fields[1])
}

// planFor returns the plan of m for n records (columns) or any number
// (record blocks, n 0), built once per mask and size.
func (e *Encoder) planFor(m Mask, n int) *plan {
	if !e.planned || e.mask != m || e.records != n {
		e.plan.build(m, n)
		e.mask, e.records, e.planned = m, n, true
	}
	return &e.plan
}

// encodeColumns writes the parts of record i (r) selected by m into the
// columns at recs.
func encodeColumns(dst []byte, recs, dataStart, i int, r *flow.Record, m Mask, pl *plan) []byte {
	if m.Flags&FlagExporter != 0 {
		off := recs + pl.exporter + i*colExporter
		PutExporter(dst[off:off+colExporter], r)
	}
	present := r.Present
	for k := range pl.n {
		it := &pl.items[k]
		off := recs + int(it.col) + i*int(it.size)
		switch it.kind {
		case flow.KindAddress:
			putAddr(dst[off:off+addrSize], r.Addr(it.field))
		case flow.KindString:
			dst = putString(dst, off, dataStart, r.String(it.field), &present, it.field)
		default:
			putUint(dst[off:off+int(it.size)], r.Uint(it.field))
		}
	}
	if pl.presence >= 0 {
		off := recs + pl.presence + i*colPresence
		le.PutUint64(dst[off:], present[0]&m.Fields[0])
		le.PutUint64(dst[off+8:], present[1]&m.Fields[1])
	}
	if m.Flags&FlagExtra == 0 {
		return dst
	}
	return AppendExtra(dst, recs+pl.extra+i*colExtra, dataStart, r.Extra)
}

// encodeScalarColumns writes the columns of a mask of unsigned and time
// fields only (pl.scalar) into cols, on a little-endian machine: a value
// is one load and one store.
func encodeScalarColumns(cols []byte, b *flow.Batch, m Mask, pl *plan) {
	n := len(b.Records)
	if n == 0 || pl.size == 0 {
		return
	}
	_ = cols[pl.size-1]
	base := unsafe.Pointer(unsafe.SliceData(cols))
	// A pass per column, each a loop of one width with no switch per
	// record: faster than one pass that switches per field
	// (BenchmarkAppendBatch/columns).
	for k := range pl.items[:pl.n] {
		encodeColumn(base, b.Records, &pl.items[k])
	}
	if pl.presence >= 0 {
		pres := unsafe.Slice((*[2]uint64)(unsafe.Add(base, pl.presence)), n)
		m0, m1 := m.Fields[0], m.Fields[1]
		for i, r := range b.Records {
			pres[i] = [2]uint64{r.Present[0] & m0, r.Present[1] & m1}
		}
	}
}

// encodeColumn writes the column of it: a loop per width, with no switch
// per record.
func encodeColumn(base unsafe.Pointer, recs []*flow.Record, it *planItem) {
	col, off := unsafe.Add(base, it.col), it.record
	switch it.size {
	case 1:
		c := unsafe.Slice((*uint8)(col), len(recs))
		for i, r := range recs {
			c[i] = *flow.Uint8At(r, off)
		}
	case 2:
		c := unsafe.Slice((*uint16)(col), len(recs))
		for i, r := range recs {
			c[i] = *flow.Uint16At(r, off)
		}
	case 4:
		c := unsafe.Slice((*uint32)(col), len(recs))
		for i, r := range recs {
			c[i] = *flow.Uint32At(r, off)
		}
	default:
		c := unsafe.Slice((*uint64)(col), len(recs))
		for i, r := range recs {
			c[i] = *flow.Uint64At(r, off)
		}
	}
}

// putPrelude writes the exporter (if flags has FlagExporter) and an empty
// Extra reference; presence is written by the caller.
func putPrelude(p []byte, r *flow.Record, flags uint32) {
	_ = p[rFields-1]
	if flags&FlagExporter != 0 {
		PutExporter(p[rExporter:rExtraOff], r)
	} else {
		p[rExporterFamily] = 0
		p[rExporterFamily+1] = 0
	}
	le.PutUint64(p[rExtraOff:], 0) // offset and count
}

// ExporterSize is the size of an encoded exporter: address (16 bytes and
// a family byte), a reserved byte, u16 port, u32 observation domain.
const ExporterSize = colExporter

// PutExporter writes r's exporter and observation domain at the start of
// p (ExporterSize bytes), as record blocks and columns hold them.
func PutExporter(p []byte, r *flow.Record) {
	_ = p[colExporter-1]
	putAddr(p[:addrSize], r.Exporter.Addr())
	p[rExporterFamily+1-rExporter] = 0
	le.PutUint16(p[rExporterPort-rExporter:], r.Exporter.Port())
	le.PutUint32(p[rDomain-rExporter:], r.ObservationDomainID)
}

// ReadExporter reads what PutExporter wrote into r; it returns false for
// an unknown address family.
func ReadExporter(p []byte, r *flow.Record) bool {
	_ = p[colExporter-1]
	a, ok := getAddr(p[:addrSize])
	if !ok {
		return false
	}
	r.Exporter = netip.AddrPortFrom(a, le.Uint16(p[rExporterPort-rExporter:]))
	r.ObservationDomainID = le.Uint32(p[rDomain-rExporter:])
	return true
}

// putUint writes v in len(p) little-endian bytes (1, 2, 4 or 8).
func putUint(p []byte, v uint64) {
	switch len(p) {
	case 1:
		p[0] = uint8(v)
	case 2:
		le.PutUint16(p, uint16(v))
	case 4:
		le.PutUint32(p, uint32(v))
	default:
		le.PutUint64(p, v)
	}
}

func getUint(p []byte) uint64 {
	switch len(p) {
	case 1:
		return uint64(p[0])
	case 2:
		return uint64(le.Uint16(p))
	case 4:
		return uint64(le.Uint32(p))
	default:
		return le.Uint64(p)
	}
}

// putAddr writes a as 16 bytes (IPv4 as ::ffff:a.b.c.d) and a family byte.
func putAddr(p []byte, a netip.Addr) {
	_ = p[addrSize-1]
	// Not As16: its 16-byte result is built from two 8-byte stores and
	// copied whole, which stalls on store forwarding.
	switch {
	case a.Is4():
		b := a.As4()
		le.PutUint64(p, 0)
		le.PutUint32(p[8:], 0xffff0000)
		le.PutUint32(p[12:], le.Uint32(b[:]))
		p[16] = 4
	case a.Is6():
		// AppendBinary stores the two words as they are.
		if b, _ := a.WithZone("").AppendBinary(p[:0:16]); len(b) != 16 || &b[0] != &p[0] {
			*(*[16]byte)(p) = a.As16()
		}
		p[16] = 6
	default:
		clear(p[:16])
		p[16] = 0
	}
}

// getAddr reads an address written by putAddr; ok is false for an unknown
// family.
func getAddr(p []byte) (a netip.Addr, ok bool) {
	_ = p[addrSize-1]
	switch p[16] {
	case 0:
		return netip.Addr{}, true
	case 4:
		return netip.AddrFrom4([4]byte(p[12:16])), true
	case 6:
		return netip.AddrFrom16([16]byte(p[:16])), true
	}
	return netip.Addr{}, false
}

// putString appends s to the data section and writes its reference at ref;
// a non-empty string marks f present.
func putString(dst []byte, ref, dataStart int, s string, present *flow.FieldSet, f flow.FieldID) []byte {
	if len(s) == 0 {
		le.PutUint64(dst[ref:ref+8], 0)
		return dst
	}
	present.Add(f)
	off := len(dst) - dataStart
	dst = append(dst, s...)
	le.PutUint32(dst[ref:], uint32(off))
	le.PutUint32(dst[ref+4:], uint32(len(s)))
	return dst
}

// AppendExtra appends the entries and values of extra (docs/abi.md, "Extra
// entry") to dst, whose data section starts at dataStart, and writes the
// Extra reference — entries offset in the data section and count, zeros
// for none — at dst[ref:ref+8]. Record blocks, columns and the RPC host's
// packed records carry Extra IEs this way.
func AppendExtra(dst []byte, ref, dataStart int, extra []flow.Field) []byte {
	k := len(extra)
	if k == 0 {
		le.PutUint64(dst[ref:], 0)
		return dst
	}
	entries := len(dst)
	dst = extend(dst, k*ExtraEntrySize)
	for j := range extra {
		f := &extra[j]
		voff := len(dst) - dataStart
		dst = append(dst, f.Value...)
		e := dst[entries+j*ExtraEntrySize : entries+(j+1)*ExtraEntrySize]
		le.PutUint32(e[eEnterprise:], f.Enterprise)
		le.PutUint16(e[eElement:], f.Element)
		e[eFlags], e[eFlags+1] = 0, 0
		if f.Variable {
			e[eFlags] = 1
		}
		le.PutUint32(e[eValueOff:], uint32(voff))
		le.PutUint32(e[eValueLen:], uint32(len(f.Value)))
	}
	le.PutUint32(dst[ref:], uint32(entries-dataStart))
	le.PutUint32(dst[ref+4:], uint32(k))
	return dst
}

// ReadExtra appends to fields the Extra IEs of the 8-byte Extra reference
// ref, whose entries and values are in data, the data section; values
// point into data. Entries or values outside data return an error wrapping
// ErrMalformed.
func ReadExtra(fields []flow.Field, ref, data []byte) ([]flow.Field, error) {
	off, k := uint64(le.Uint32(ref)), uint64(le.Uint32(ref[4:]))
	if k == 0 {
		return fields, nil
	}
	if off+k*ExtraEntrySize > uint64(len(data)) {
		return fields, malformed("%d extra entries at %d beyond the %d-byte data section", k, off, len(data))
	}
	for j := range k {
		e := data[off+j*ExtraEntrySize : off+(j+1)*ExtraEntrySize]
		vo, vl := uint64(le.Uint32(e[eValueOff:])), uint64(le.Uint32(e[eValueLen:]))
		if vo+vl > uint64(len(data)) {
			return fields, malformed("extra entry %d value %d+%d beyond the %d-byte data section", j, vo, vl, len(data))
		}
		fields = append(fields, flow.Field{
			Enterprise: le.Uint32(e[eEnterprise:]),
			Element:    le.Uint16(e[eElement:]),
			Variable:   e[eFlags]&1 != 0,
			Value:      data[vo : vo+vl : vo+vl],
		})
	}
	return fields, nil
}

// View is a parsed, validated batch buffer. Its records are decoded one at
// a time with [Decoder.Record].
type View struct {
	buf      []byte
	n        int
	recSize  int
	recOff   int
	data     []byte
	mask     Mask // header mask ∩ fields that fit in recSize
	fullFast bool // the block has the v1 layout and the mask is All
	columns  bool // columnar layout (FlagColumns)
}

// ParseBatch validates the header of a batch buffer. It returns a
// *VersionError for an unsupported version and an error wrapping
// ErrMalformed for a buffer that does not follow the layout.
func ParseBatch(buf []byte) (View, error) {
	if len(buf) < BatchHeaderSize {
		return View{}, malformed("batch buffer of %d bytes is shorter than its %d-byte header", len(buf), BatchHeaderSize)
	}
	h := readHeader(buf)
	if h.Magic != MagicBatch {
		return View{}, malformed("batch buffer magic %#08x, want %#08x", h.Magic, MagicBatch)
	}
	if err := CheckVersion(h.Version); err != nil {
		return View{}, err
	}
	hs, n, rs, ro := int(h.HeaderSize), int(h.Count), int(h.RecordSize), int(h.RecordsOff)
	do, dl := int(h.DataOff), int(h.DataLen)
	mask := Mask{Fields: h.Fields, Flags: h.Flags}.normalize()
	if hs < BatchHeaderSize {
		return View{}, malformed("batch header size %d, want at least %d", hs, BatchHeaderSize)
	}
	if uint64(do)+uint64(dl) > uint64(len(buf)) {
		return View{}, malformed("data section %d+%d beyond the %d-byte buffer", do, dl, len(buf))
	}
	if mask.Columns() {
		// Columns of fields this reader does not know come after the
		// ones it knows.
		if ro < hs || ro%8 != 0 || n > len(buf) || uint64(ro)+uint64(ColumnsSize(mask, n)) > uint64(do) {
			return View{}, malformed("columns of %d records at offset %d overlap the header (%d bytes) or the data section (offset %d), or are not 8-byte aligned", n, ro, hs, do)
		}
		return View{buf: buf, n: n, recOff: ro, data: buf[do : do+dl : do+dl], mask: mask, columns: true}, nil
	}
	switch {
	case rs < rFields:
		return View{}, malformed("record size %d, want at least %d", rs, rFields)
	case ro < hs || uint64(ro)+uint64(n)*uint64(rs) > uint64(do):
		return View{}, malformed("%d records of %d bytes at offset %d overlap the header (%d bytes) or the data section (offset %d)", n, rs, ro, hs, do)
	}
	v := View{buf: buf, n: n, recSize: rs, recOff: ro, data: buf[do : do+dl : do+dl], mask: mask}
	if rs < RecordSize {
		// A block from an older layout: fields past its end are absent.
		for f := range flow.NumFields {
			if int(fieldOffset[f]+fieldSize[f]) > rs {
				v.mask.Fields.Remove(flow.FieldID(f))
			}
		}
	}
	v.fullFast = v.mask.IsAll() && unrolled
	return v, nil
}

// Len returns the number of records in the batch.
func (v *View) Len() int { return v.n }

// Mask returns what the buffer's records carry.
func (v *View) Mask() Mask { return v.mask }

// Decoder decodes records from batch buffers. It interns strings, so a
// label repeated across records and batches is allocated once. The zero
// value is ready to use; a Decoder is not safe for concurrent use.
type Decoder struct {
	strings  Strings
	plan     plan // fields of planMask, reused while batches keep one mask
	planMask Mask
	planned  bool

	// The last batch Parse accepted: its header, length and data section,
	// which the next batch's are compared with.
	last           View
	lastHdr        [BatchHeaderSize / 8]uint64
	lastLen        int
	lastDo, lastDe int
}

// Parse is [ParseBatch] for a stream of batches, as a guest receives
// them: a batch whose header and length equal the last accepted one's
// ([Decoder.Same]) is not validated again, which spares a guest most of
// its per-batch cost. The View is valid until the next call.
func (d *Decoder) Parse(buf []byte) (*View, error) {
	if d.Same(buf) {
		v := &d.last
		v.buf, v.data = buf, buf[d.lastDo:d.lastDe:d.lastDe]
		return v, nil
	}
	d.lastLen = 0
	v, err := ParseBatch(buf)
	if err != nil {
		return nil, err
	}
	for k := range d.lastHdr {
		d.lastHdr[k] = le.Uint64(buf[8*k:])
	}
	h := readHeader(buf)
	d.last, d.lastLen, d.lastDo, d.lastDe = v, len(buf), int(h.DataOff), int(h.DataOff+h.DataLen)
	return &d.last, nil
}

// Same reports whether buf has the length and header of the last batch
// Parse accepted: then it has its layout, and what a caller derived from
// that layout still holds.
func (d *Decoder) Same(buf []byte) bool {
	if len(buf) != d.lastLen || len(buf) < BatchHeaderSize {
		return false
	}
	// Word by word: comparing header structs costs several times more in
	// WebAssembly.
	h := &d.lastHdr
	return le.Uint64(buf) == h[0] && le.Uint64(buf[8:]) == h[1] && le.Uint64(buf[16:]) == h[2] &&
		le.Uint64(buf[24:]) == h[3] && le.Uint64(buf[32:]) == h[4] && le.Uint64(buf[40:]) == h[5]
}

// Decode parses buf and appends its records to b. Extra values are copied
// into b's arena, so the records do not refer to buf.
func (d *Decoder) Decode(buf []byte, b *flow.Batch) error {
	v, err := ParseBatch(buf)
	if err != nil {
		return err
	}
	for i := range v.n {
		r := b.Append()
		if err := d.Record(&v, i, r); err != nil {
			b.Unappend()
			return err
		}
		for j := range r.Extra {
			r.Extra[j].Value = b.CopyBytes(r.Extra[j].Value)
		}
	}
	return nil
}

// Record decodes record i of v into r: it sets r.Present and every part in
// v's mask, and leaves the other fields of r as they are (zero for a reset
// record). Extra values point into v's buffer.
func (d *Decoder) Record(v *View, i int, r *flow.Record) error {
	if i < 0 || i >= v.n {
		return malformed("record %d of a %d-record batch", i, v.n)
	}
	if v.columns {
		return d.recordColumns(v, i, r)
	}
	off := v.recOff + i*v.recSize
	p := v.buf[off : off+v.recSize]
	r.Present = flow.FieldSet{le.Uint64(p[rPresent:]) & v.mask.Fields[0], le.Uint64(p[rPresent+8:]) & v.mask.Fields[1]}
	if v.mask.Flags&FlagExporter != 0 && !ReadExporter(p[rExporter:rExtraOff], r) {
		return malformed("record %d: exporter address family %d", i, p[rExporterFamily])
	}
	var err error
	if v.fullFast {
		err = d.decodeFull(v, p[:unrolledSize], r)
	} else {
		err = d.decodeMasked(v, p, r)
	}
	if err != nil {
		return decodeErr(i, err)
	}
	if v.mask.Flags&FlagExtra != 0 {
		var err error
		if r.Extra, err = ReadExtra(r.Extra[:0], p[rExtraOff:rFields], v.data); err != nil {
			return decodeErr(i, err)
		}
	}
	return nil
}

// recordColumns is Record for the columnar layout.
func (d *Decoder) recordColumns(v *View, i int, r *flow.Record) error {
	pl := d.planFor(v)
	cols := v.buf[v.recOff : v.recOff+pl.size]
	if pl.presence >= 0 {
		p := cols[pl.presence+i*colPresence:]
		r.Present = flow.FieldSet{le.Uint64(p) & v.mask.Fields[0], le.Uint64(p[8:]) & v.mask.Fields[1]}
	} else {
		r.Present = v.mask.Fields
	}
	if v.mask.Flags&FlagExporter != 0 {
		off := pl.exporter + i*colExporter
		if !ReadExporter(cols[off:off+colExporter], r) {
			return malformed("record %d: exporter address family %d", i, cols[off+addrSize-1])
		}
	}
	for k := range pl.n {
		it := &pl.items[k]
		off := int(it.col) + i*int(it.size)
		if err := d.field(v, cols[off:off+int(it.size)], it, r); err != nil {
			return decodeErr(i, err)
		}
	}
	if v.mask.Flags&FlagExtra != 0 {
		off := pl.extra + i*colExtra
		var err error
		if r.Extra, err = ReadExtra(r.Extra[:0], cols[off:off+colExtra], v.data); err != nil {
			return decodeErr(i, err)
		}
	}
	return nil
}

// planFor returns the plan of v's layout, built once per mask (and, for
// columns, per record count).
func (d *Decoder) planFor(v *View) *plan {
	if !d.planned || d.planMask != v.mask || (v.columns && d.plan.records != v.n) {
		d.plan.build(v.mask, v.n)
		d.planMask, d.planned = v.mask, true
	}
	return &d.plan
}

func decodeErr(i int, err error) error {
	return malformed("record %d: %v", i, err)
}

type fieldError struct {
	field flow.FieldID
	what  string
}

func (e *fieldError) Error() string { return e.field.String() + ": " + e.what }

func (d *Decoder) decodeFull(v *View, p []byte, r *flow.Record) error {
	var ok, all bool = true, true
	r.SourceAddress, ok = getAddr(p[oSourceAddress : oSourceAddress+addrSize])
	all = all && ok
	r.DestinationAddress, ok = getAddr(p[oDestinationAddress : oDestinationAddress+addrSize])
	all = all && ok
	r.SourceTransportPort = le.Uint16(p[oSourceTransportPort:])
	r.DestinationTransportPort = le.Uint16(p[oDestinationTransportPort:])
	r.ProtocolIdentifier = p[oProtocolIdentifier]
	r.IPClassOfService = p[oIPClassOfService]
	r.TCPControlBits = le.Uint16(p[oTCPControlBits:])
	r.FlowEndReason = p[oFlowEndReason]
	r.IngressInterface = le.Uint32(p[oIngressInterface:])
	r.EgressInterface = le.Uint32(p[oEgressInterface:])
	r.FlowStart = int64(le.Uint64(p[oFlowStart:]))
	r.FlowEnd = int64(le.Uint64(p[oFlowEnd:]))
	r.OctetDeltaCount = le.Uint64(p[oOctetDeltaCount:])
	r.PacketDeltaCount = le.Uint64(p[oPacketDeltaCount:])
	r.OctetTotalCount = le.Uint64(p[oOctetTotalCount:])
	r.PacketTotalCount = le.Uint64(p[oPacketTotalCount:])
	r.ReverseOctetDeltaCount = le.Uint64(p[oReverseOctetDeltaCount:])
	r.ReversePacketDeltaCount = le.Uint64(p[oReversePacketDeltaCount:])
	r.ReverseOctetTotalCount = le.Uint64(p[oReverseOctetTotalCount:])
	r.ReversePacketTotalCount = le.Uint64(p[oReversePacketTotalCount:])
	r.OriginalExporterAddress, ok = getAddr(p[oOriginalExporterAddress : oOriginalExporterAddress+addrSize])
	all = all && ok
	r.OriginalObservationDomainID = le.Uint32(p[oOriginalObservationDomainID:])
	r.DestinationClusterIP, ok = getAddr(p[oDestinationClusterIP : oDestinationClusterIP+addrSize])
	all = all && ok
	r.DestinationServicePort = le.Uint16(p[oDestinationServicePort:])
	r.IngressNetworkPolicyRuleAction = p[oIngressNetworkPolicyRuleAction]
	r.IngressNetworkPolicyType = p[oIngressNetworkPolicyType]
	r.EgressNetworkPolicyRuleAction = p[oEgressNetworkPolicyRuleAction]
	r.EgressNetworkPolicyType = p[oEgressNetworkPolicyType]
	r.FlowType = p[oFlowType]
	if !all {
		return d.decodeMasked(v, p, r) // names the bad field
	}
	var err error
	str := func(ref int) string {
		s, e := d.str(v, p[ref:ref+strSize])
		if e != nil && err == nil {
			err = e
		}
		return s
	}
	r.SourcePodNamespace = str(oSourcePodNamespace)
	r.SourcePodName = str(oSourcePodName)
	r.DestinationPodNamespace = str(oDestinationPodNamespace)
	r.DestinationPodName = str(oDestinationPodName)
	r.SourceNodeName = str(oSourceNodeName)
	r.DestinationNodeName = str(oDestinationNodeName)
	r.DestinationServicePortName = str(oDestinationServicePortName)
	r.IngressNetworkPolicyName = str(oIngressNetworkPolicyName)
	r.IngressNetworkPolicyNamespace = str(oIngressNetworkPolicyNamespace)
	r.IngressNetworkPolicyRuleName = str(oIngressNetworkPolicyRuleName)
	r.EgressNetworkPolicyName = str(oEgressNetworkPolicyName)
	r.EgressNetworkPolicyNamespace = str(oEgressNetworkPolicyNamespace)
	r.EgressNetworkPolicyRuleName = str(oEgressNetworkPolicyRuleName)
	r.TCPState = str(oTCPState)
	r.EgressNodeName = str(oEgressNodeName)
	r.SourcePodLabels = str(oSourcePodLabels)
	r.DestinationPodLabels = str(oDestinationPodLabels)
	if err != nil {
		return d.decodeMasked(v, p, r) // names the bad field
	}
	return nil
}

func (d *Decoder) decodeMasked(v *View, p []byte, r *flow.Record) error {
	pl := d.planFor(v)
	for i := range pl.n {
		it := &pl.items[i]
		if err := d.field(v, p[it.block:int(it.block)+int(it.size)], it, r); err != nil {
			return err
		}
	}
	return nil
}

// field decodes the value q of field it into r.
func (d *Decoder) field(v *View, q []byte, it *planItem, r *flow.Record) error {
	switch it.kind {
	case flow.KindAddress:
		a, ok := getAddr(q)
		if !ok {
			return &fieldError{it.field, "address family " + itoa(int(q[16]))}
		}
		*r.AddrRef(it.field) = a
	case flow.KindString:
		s, err := d.str(v, q)
		if err != nil {
			return &fieldError{it.field, err.Error()}
		}
		*r.StringRef(it.field) = s
	default:
		r.StoreUint(it.field, getUint(q))
	}
	return nil
}

// str reads a string reference (u32 offset, u32 length) from q.
func (d *Decoder) str(v *View, q []byte) (string, error) {
	off, n := uint64(le.Uint32(q)), uint64(le.Uint32(q[4:]))
	if n == 0 {
		return "", nil
	}
	if off+n > uint64(len(v.data)) {
		return "", malformed("string %d+%d beyond the %d-byte data section", off, n, len(v.data))
	}
	return d.strings.Intern(v.data[off : off+n]), nil
}

func itoa(i int) string { return strconv.Itoa(i) }
