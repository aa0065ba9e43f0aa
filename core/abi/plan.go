package abi

import (
	"math/bits"
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// recordOffset is the offset in flow.Record of each unsigned and time
// field, so that a masked encode or decode reads and writes the field
// directly instead of going through a switch per field. A test checks it
// against the Record accessors.
var recordOffset = func() (o [flow.NumFields]uintptr) {
	var r flow.Record
	o[flow.SourceTransportPort] = unsafe.Offsetof(r.SourceTransportPort)
	o[flow.DestinationTransportPort] = unsafe.Offsetof(r.DestinationTransportPort)
	o[flow.ProtocolIdentifier] = unsafe.Offsetof(r.ProtocolIdentifier)
	o[flow.IPClassOfService] = unsafe.Offsetof(r.IPClassOfService)
	o[flow.TCPControlBits] = unsafe.Offsetof(r.TCPControlBits)
	o[flow.FlowEndReason] = unsafe.Offsetof(r.FlowEndReason)
	o[flow.IngressInterface] = unsafe.Offsetof(r.IngressInterface)
	o[flow.EgressInterface] = unsafe.Offsetof(r.EgressInterface)
	o[flow.FlowStart] = unsafe.Offsetof(r.FlowStart)
	o[flow.FlowEnd] = unsafe.Offsetof(r.FlowEnd)
	o[flow.OctetDeltaCount] = unsafe.Offsetof(r.OctetDeltaCount)
	o[flow.PacketDeltaCount] = unsafe.Offsetof(r.PacketDeltaCount)
	o[flow.OctetTotalCount] = unsafe.Offsetof(r.OctetTotalCount)
	o[flow.PacketTotalCount] = unsafe.Offsetof(r.PacketTotalCount)
	o[flow.ReverseOctetDeltaCount] = unsafe.Offsetof(r.ReverseOctetDeltaCount)
	o[flow.ReversePacketDeltaCount] = unsafe.Offsetof(r.ReversePacketDeltaCount)
	o[flow.ReverseOctetTotalCount] = unsafe.Offsetof(r.ReverseOctetTotalCount)
	o[flow.ReversePacketTotalCount] = unsafe.Offsetof(r.ReversePacketTotalCount)
	o[flow.OriginalObservationDomainID] = unsafe.Offsetof(r.OriginalObservationDomainID)
	o[flow.DestinationServicePort] = unsafe.Offsetof(r.DestinationServicePort)
	o[flow.IngressNetworkPolicyRuleAction] = unsafe.Offsetof(r.IngressNetworkPolicyRuleAction)
	o[flow.IngressNetworkPolicyType] = unsafe.Offsetof(r.IngressNetworkPolicyType)
	o[flow.EgressNetworkPolicyRuleAction] = unsafe.Offsetof(r.EgressNetworkPolicyRuleAction)
	o[flow.EgressNetworkPolicyType] = unsafe.Offsetof(r.EgressNetworkPolicyType)
	o[flow.FlowType] = unsafe.Offsetof(r.FlowType)
	return o
}()

// planItem is one field of a masked encode or decode.
type planItem struct {
	field  flow.FieldID
	kind   flow.Kind
	size   uint8   // bytes per value
	block  uint16  // offset in the record block (record blocks)
	col    uint32  // offset of the field's column from the records offset (columns)
	record uintptr // offset in flow.Record (unsigned and time fields)
}

// plan lists the fields of a mask, in field order, and where they are in
// the mask's layout.
type plan struct {
	items [flow.NumFields]planItem
	n     int
	// byField is 1 + the index in items of each field of the mask, 0 for
	// the others.
	byField [flow.NumFields]uint8
	// columns: the layout is columnar; the offsets below are those of the
	// prelude columns, from the records offset, for records records
	// (presence is -1 without a presence column).
	columns                   bool
	records                   int
	presence, exporter, extra int
	// size is the size of the record area: the columns, or one record
	// block (RecordSize).
	size int
	// scalar: every item is an unsigned or time field and neither the
	// exporter nor Extra is encoded, so a record decodes with plain loads.
	scalar bool
}

// build lists the fields of m; for the columnar layout, it places the
// columns of n records.
func (p *plan) build(m Mask, n int) {
	p.n = 0
	p.byField = [flow.NumFields]uint8{}
	p.columns, p.records = m.Columns(), n
	p.presence, p.exporter, p.extra, p.size = rPresent, rExporter, rExtraOff, RecordSize
	at := 0
	if p.columns {
		p.presence = -1
		if m.presence() {
			p.presence, at = 0, align8(n*colPresence)
		}
		if m.Flags&FlagExporter != 0 {
			p.exporter, at = at, at+align8(n*colExporter)
		}
		if m.Flags&FlagExtra != 0 {
			p.extra, at = at, at+align8(n*colExtra)
		}
	}
	p.scalar = m.Flags&(FlagExporter|FlagExtra) == 0
	for w := range m.Fields {
		for word := m.Fields[w]; word != 0; word &= word - 1 {
			f := flow.FieldID(w*64 + bits.TrailingZeros64(word))
			if int(f) >= flow.NumFields {
				continue
			}
			kind := flow.Fields[f].Kind
			it := planItem{
				field: f, kind: kind, size: uint8(fieldSize[f]),
				block: uint16(fieldOffset[f]), record: recordOffset[f],
			}
			if p.columns {
				it.col = uint32(at)
				at += align8(n * int(it.size))
			}
			p.items[p.n] = it
			p.n++
			p.byField[f] = uint8(p.n)
			if kind == flow.KindAddress || kind == flow.KindString {
				p.scalar = false
			}
		}
	}
	if p.columns {
		p.size = at
	}
}

// loadUint reads an unsigned field of r through its offset.
func loadUint(r *flow.Record, it *planItem) uint64 {
	p := unsafe.Add(unsafe.Pointer(r), it.record)
	switch it.size {
	case 1:
		return uint64(*(*uint8)(p))
	case 2:
		return uint64(*(*uint16)(p))
	case 4:
		return uint64(*(*uint32)(p))
	}
	return *(*uint64)(p)
}

// storeUint writes an unsigned field of r through its offset.
func storeUint(r *flow.Record, it *planItem, v uint64) {
	p := unsafe.Add(unsafe.Pointer(r), it.record)
	switch it.size {
	case 1:
		*(*uint8)(p) = uint8(v)
	case 2:
		*(*uint16)(p) = uint16(v)
	case 4:
		*(*uint32)(p) = uint32(v)
	default:
		*(*uint64)(p) = v
	}
}

// addrField and stringField return a pointer to an address or string
// field of r, which SetAddr/SetString would also mark present; decoding
// sets presence from the buffer instead.
func addrField(r *flow.Record, f flow.FieldID) *netip.Addr {
	switch f {
	case flow.SourceAddress:
		return &r.SourceAddress
	case flow.DestinationAddress:
		return &r.DestinationAddress
	case flow.OriginalExporterAddress:
		return &r.OriginalExporterAddress
	}
	return &r.DestinationClusterIP
}

func stringField(r *flow.Record, f flow.FieldID) *string {
	switch f {
	case flow.SourcePodNamespace:
		return &r.SourcePodNamespace
	case flow.SourcePodName:
		return &r.SourcePodName
	case flow.DestinationPodNamespace:
		return &r.DestinationPodNamespace
	case flow.DestinationPodName:
		return &r.DestinationPodName
	case flow.SourceNodeName:
		return &r.SourceNodeName
	case flow.DestinationNodeName:
		return &r.DestinationNodeName
	case flow.DestinationServicePortName:
		return &r.DestinationServicePortName
	case flow.IngressNetworkPolicyName:
		return &r.IngressNetworkPolicyName
	case flow.IngressNetworkPolicyNamespace:
		return &r.IngressNetworkPolicyNamespace
	case flow.IngressNetworkPolicyRuleName:
		return &r.IngressNetworkPolicyRuleName
	case flow.EgressNetworkPolicyName:
		return &r.EgressNetworkPolicyName
	case flow.EgressNetworkPolicyNamespace:
		return &r.EgressNetworkPolicyNamespace
	case flow.EgressNetworkPolicyRuleName:
		return &r.EgressNetworkPolicyRuleName
	case flow.TCPState:
		return &r.TCPState
	case flow.EgressNodeName:
		return &r.EgressNodeName
	case flow.SourcePodLabels:
		return &r.SourcePodLabels
	}
	return &r.DestinationPodLabels
}
