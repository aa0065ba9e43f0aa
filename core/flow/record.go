package flow

import (
	"math/bits"
	"net/netip"
)

// Record is one flow record. Typed fields hold the IEs listed in [Fields];
// every other IE of the record is in Extra, verbatim.
//
// A typed field counts as present when its bit is in Present (set by the
// Set* methods and by decoders) or, for strings, when it is non-empty. Only
// present fields are exported.
//
// # Notes
//   - Strings are immutable Go strings and may be retained.
//   - Extra values point into their batch's arena: they are valid until the
//     batch is released (see [Batch]). Copy them to keep them.
type Record struct {
	// Exporter is the transport address of the exporting process that sent
	// the record (IPFIX message source address and port).
	Exporter netip.AddrPort
	// ObservationDomainID is the observation domain of the message that
	// carried the record (RFC 7011 §3.1).
	ObservationDomainID uint32

	SourceAddress            netip.Addr // sourceIPv4Address (8) or sourceIPv6Address (27)
	DestinationAddress       netip.Addr // destinationIPv4Address (12) or destinationIPv6Address (28)
	SourceTransportPort      uint16     // IE 7
	DestinationTransportPort uint16     // IE 11
	ProtocolIdentifier       uint8      // IE 4, IANA protocol number
	IPClassOfService         uint8      // IE 5
	TCPControlBits           uint16     // IE 6, TCP header flags
	FlowEndReason            uint8      // IE 136
	IngressInterface         uint32     // IE 10
	EgressInterface          uint32     // IE 14
	// FlowStart and FlowEnd are absolute times in nanoseconds since the Unix
	// epoch, whatever form the exporter used (seconds, milliseconds,
	// microseconds, nanoseconds, sysUpTime or delta; RFC 7011 §6.1.7–§6.1.10).
	// Exported as flowStartMilliseconds (152) / flowEndMilliseconds (153).
	FlowStart int64
	FlowEnd   int64

	OctetDeltaCount         uint64 // IE 1, octets
	PacketDeltaCount        uint64 // IE 2, packets
	OctetTotalCount         uint64 // IE 85
	PacketTotalCount        uint64 // IE 86
	ReverseOctetDeltaCount  uint64 // IE 1, PEN 29305 (RFC 5103)
	ReversePacketDeltaCount uint64 // IE 2, PEN 29305
	ReverseOctetTotalCount  uint64 // IE 85, PEN 29305
	ReversePacketTotalCount uint64 // IE 86, PEN 29305

	OriginalExporterAddress     netip.Addr // originalExporterIPv4Address (403) / IPv6 (404)
	OriginalObservationDomainID uint32     // IE 405

	// Antrea IEs (PEN 56506).
	SourcePodNamespace             string
	SourcePodName                  string
	DestinationPodNamespace        string
	DestinationPodName             string
	SourceNodeName                 string
	DestinationNodeName            string
	DestinationClusterIP           netip.Addr // destinationClusterIPv4 (106) / IPv6 (107)
	DestinationServicePort         uint16
	DestinationServicePortName     string
	IngressNetworkPolicyName       string
	IngressNetworkPolicyNamespace  string
	IngressNetworkPolicyRuleName   string
	IngressNetworkPolicyRuleAction uint8
	IngressNetworkPolicyType       uint8
	EgressNetworkPolicyName        string
	EgressNetworkPolicyNamespace   string
	EgressNetworkPolicyRuleName    string
	EgressNetworkPolicyRuleAction  uint8
	EgressNetworkPolicyType        uint8
	TCPState                       string
	FlowType                       uint8
	EgressNodeName                 string
	SourcePodLabels                string // JSON object of label key → value
	DestinationPodLabels           string // JSON object of label key → value

	// Present marks the typed fields the record carries.
	Present FieldSet
	// Extra holds every IE without a typed field, in template order.
	Extra []Field
}

// Field is one IE kept verbatim: its identity and its encoded bytes as the
// exporter sent them (network order).
type Field struct {
	Enterprise uint32
	Element    uint16
	// Variable is true when the template declared the IE variable-length
	// (length 65535, RFC 7011 §7); it is re-exported the same way.
	Variable bool
	// Value is the IE's content, without the variable-length prefix.
	Value []byte
}

// Key returns the IE's identity.
func (f *Field) Key() IEKey { return IEKey{f.Enterprise, f.Element} }

// Reset clears r for reuse, keeping Extra's capacity.
func (r *Record) Reset() {
	extra := r.Extra[:0]
	*r = Record{}
	r.Extra = extra
}

// Has reports whether field f is present in r.
func (r *Record) Has(f FieldID) bool {
	if r.Present.Has(f) {
		return true
	}
	if Fields[f].Kind == KindString {
		return r.String(f) != ""
	}
	return false
}

// PresentSet returns every present typed field: the Present bits plus the
// non-empty strings. Iterating it is cheaper than calling Has per field.
func (r *Record) PresentSet() FieldSet {
	s := r.Present
	if r.SourcePodNamespace != "" {
		s.Add(SourcePodNamespace)
	}
	if r.SourcePodName != "" {
		s.Add(SourcePodName)
	}
	if r.DestinationPodNamespace != "" {
		s.Add(DestinationPodNamespace)
	}
	if r.DestinationPodName != "" {
		s.Add(DestinationPodName)
	}
	if r.SourceNodeName != "" {
		s.Add(SourceNodeName)
	}
	if r.DestinationNodeName != "" {
		s.Add(DestinationNodeName)
	}
	if r.DestinationServicePortName != "" {
		s.Add(DestinationServicePortName)
	}
	if r.IngressNetworkPolicyName != "" {
		s.Add(IngressNetworkPolicyName)
	}
	if r.IngressNetworkPolicyNamespace != "" {
		s.Add(IngressNetworkPolicyNamespace)
	}
	if r.IngressNetworkPolicyRuleName != "" {
		s.Add(IngressNetworkPolicyRuleName)
	}
	if r.EgressNetworkPolicyName != "" {
		s.Add(EgressNetworkPolicyName)
	}
	if r.EgressNetworkPolicyNamespace != "" {
		s.Add(EgressNetworkPolicyNamespace)
	}
	if r.EgressNetworkPolicyRuleName != "" {
		s.Add(EgressNetworkPolicyRuleName)
	}
	if r.TCPState != "" {
		s.Add(TCPState)
	}
	if r.EgressNodeName != "" {
		s.Add(EgressNodeName)
	}
	if r.SourcePodLabels != "" {
		s.Add(SourcePodLabels)
	}
	if r.DestinationPodLabels != "" {
		s.Add(DestinationPodLabels)
	}
	return s
}

// Next returns the smallest field in s at or after f, or false.
func (s *FieldSet) Next(f FieldID) (FieldID, bool) {
	for w := int(f) >> 6; w < len(s); w++ {
		word := s[w]
		if w == int(f)>>6 {
			word &= ^uint64(0) << (f & 63)
		}
		if word != 0 {
			return FieldID(w<<6 + bits.TrailingZeros64(word)), true
		}
	}
	return 0, false
}

// Clear removes field f from r and zeroes it.
func (r *Record) Clear(f FieldID) {
	r.Present.Remove(f)
	switch Fields[f].Kind {
	case KindString:
		r.SetString(f, "")
		r.Present.Remove(f)
	case KindAddress:
		*r.addrPtr(f) = netip.Addr{}
	default:
		r.SetUint(f, 0)
		r.Present.Remove(f)
	}
}

// Uint returns an unsigned or time field (times as nanoseconds since epoch).
// It returns 0 for fields of another kind.
func (r *Record) Uint(f FieldID) uint64 {
	switch f {
	case SourceTransportPort:
		return uint64(r.SourceTransportPort)
	case DestinationTransportPort:
		return uint64(r.DestinationTransportPort)
	case ProtocolIdentifier:
		return uint64(r.ProtocolIdentifier)
	case IPClassOfService:
		return uint64(r.IPClassOfService)
	case TCPControlBits:
		return uint64(r.TCPControlBits)
	case FlowEndReason:
		return uint64(r.FlowEndReason)
	case IngressInterface:
		return uint64(r.IngressInterface)
	case EgressInterface:
		return uint64(r.EgressInterface)
	case FlowStart:
		return uint64(r.FlowStart)
	case FlowEnd:
		return uint64(r.FlowEnd)
	case OctetDeltaCount:
		return r.OctetDeltaCount
	case PacketDeltaCount:
		return r.PacketDeltaCount
	case OctetTotalCount:
		return r.OctetTotalCount
	case PacketTotalCount:
		return r.PacketTotalCount
	case ReverseOctetDeltaCount:
		return r.ReverseOctetDeltaCount
	case ReversePacketDeltaCount:
		return r.ReversePacketDeltaCount
	case ReverseOctetTotalCount:
		return r.ReverseOctetTotalCount
	case ReversePacketTotalCount:
		return r.ReversePacketTotalCount
	case OriginalObservationDomainID:
		return uint64(r.OriginalObservationDomainID)
	case DestinationServicePort:
		return uint64(r.DestinationServicePort)
	case IngressNetworkPolicyRuleAction:
		return uint64(r.IngressNetworkPolicyRuleAction)
	case IngressNetworkPolicyType:
		return uint64(r.IngressNetworkPolicyType)
	case EgressNetworkPolicyRuleAction:
		return uint64(r.EgressNetworkPolicyRuleAction)
	case EgressNetworkPolicyType:
		return uint64(r.EgressNetworkPolicyType)
	case FlowType:
		return uint64(r.FlowType)
	}
	return 0
}

// SetUint sets an unsigned or time field and marks it present. Values wider
// than the field are truncated, as reduced-size encoding does (RFC 7011
// §6.2). It does nothing for fields of another kind.
func (r *Record) SetUint(f FieldID, v uint64) {
	switch f {
	case SourceTransportPort:
		r.SourceTransportPort = uint16(v)
	case DestinationTransportPort:
		r.DestinationTransportPort = uint16(v)
	case ProtocolIdentifier:
		r.ProtocolIdentifier = uint8(v)
	case IPClassOfService:
		r.IPClassOfService = uint8(v)
	case TCPControlBits:
		r.TCPControlBits = uint16(v)
	case FlowEndReason:
		r.FlowEndReason = uint8(v)
	case IngressInterface:
		r.IngressInterface = uint32(v)
	case EgressInterface:
		r.EgressInterface = uint32(v)
	case FlowStart:
		r.FlowStart = int64(v)
	case FlowEnd:
		r.FlowEnd = int64(v)
	case OctetDeltaCount:
		r.OctetDeltaCount = v
	case PacketDeltaCount:
		r.PacketDeltaCount = v
	case OctetTotalCount:
		r.OctetTotalCount = v
	case PacketTotalCount:
		r.PacketTotalCount = v
	case ReverseOctetDeltaCount:
		r.ReverseOctetDeltaCount = v
	case ReversePacketDeltaCount:
		r.ReversePacketDeltaCount = v
	case ReverseOctetTotalCount:
		r.ReverseOctetTotalCount = v
	case ReversePacketTotalCount:
		r.ReversePacketTotalCount = v
	case OriginalObservationDomainID:
		r.OriginalObservationDomainID = uint32(v)
	case DestinationServicePort:
		r.DestinationServicePort = uint16(v)
	case IngressNetworkPolicyRuleAction:
		r.IngressNetworkPolicyRuleAction = uint8(v)
	case IngressNetworkPolicyType:
		r.IngressNetworkPolicyType = uint8(v)
	case EgressNetworkPolicyRuleAction:
		r.EgressNetworkPolicyRuleAction = uint8(v)
	case EgressNetworkPolicyType:
		r.EgressNetworkPolicyType = uint8(v)
	case FlowType:
		r.FlowType = uint8(v)
	default:
		return
	}
	r.Present.Add(f)
}

// String returns a string field, or "" for fields of another kind.
func (r *Record) String(f FieldID) string {
	if p := r.stringPtr(f); p != nil {
		return *p
	}
	return ""
}

// SetString sets a string field and marks it present.
func (r *Record) SetString(f FieldID, s string) {
	if p := r.stringPtr(f); p != nil {
		*p = s
		r.Present.Add(f)
	}
}

// Addr returns an address field, or the zero Addr for fields of another kind.
func (r *Record) Addr(f FieldID) netip.Addr {
	if p := r.addrPtr(f); p != nil {
		return *p
	}
	return netip.Addr{}
}

// SetAddr sets an address field; a valid address marks it present.
func (r *Record) SetAddr(f FieldID, a netip.Addr) {
	if p := r.addrPtr(f); p != nil {
		*p = a
		if a.IsValid() {
			r.Present.Add(f)
		} else {
			r.Present.Remove(f)
		}
	}
}

func (r *Record) addrPtr(f FieldID) *netip.Addr {
	switch f {
	case SourceAddress:
		return &r.SourceAddress
	case DestinationAddress:
		return &r.DestinationAddress
	case OriginalExporterAddress:
		return &r.OriginalExporterAddress
	case DestinationClusterIP:
		return &r.DestinationClusterIP
	}
	return nil
}

func (r *Record) stringPtr(f FieldID) *string {
	switch f {
	case SourcePodNamespace:
		return &r.SourcePodNamespace
	case SourcePodName:
		return &r.SourcePodName
	case DestinationPodNamespace:
		return &r.DestinationPodNamespace
	case DestinationPodName:
		return &r.DestinationPodName
	case SourceNodeName:
		return &r.SourceNodeName
	case DestinationNodeName:
		return &r.DestinationNodeName
	case DestinationServicePortName:
		return &r.DestinationServicePortName
	case IngressNetworkPolicyName:
		return &r.IngressNetworkPolicyName
	case IngressNetworkPolicyNamespace:
		return &r.IngressNetworkPolicyNamespace
	case IngressNetworkPolicyRuleName:
		return &r.IngressNetworkPolicyRuleName
	case EgressNetworkPolicyName:
		return &r.EgressNetworkPolicyName
	case EgressNetworkPolicyNamespace:
		return &r.EgressNetworkPolicyNamespace
	case EgressNetworkPolicyRuleName:
		return &r.EgressNetworkPolicyRuleName
	case TCPState:
		return &r.TCPState
	case EgressNodeName:
		return &r.EgressNodeName
	case SourcePodLabels:
		return &r.SourcePodLabels
	case DestinationPodLabels:
		return &r.DestinationPodLabels
	}
	return nil
}

// FindExtra returns the verbatim IE k of r, or nil.
func (r *Record) FindExtra(k IEKey) *Field {
	for i := range r.Extra {
		if r.Extra[i].Enterprise == k.Enterprise && r.Extra[i].Element == k.Element {
			return &r.Extra[i]
		}
	}
	return nil
}

// CopyFrom makes r a deep copy of src; Extra values are copied into b's
// arena, so the copy lives as long as b.
func (r *Record) CopyFrom(src *Record, b *Batch) {
	extra := r.Extra[:0]
	*r = *src
	for _, f := range src.Extra {
		f.Value = b.CopyBytes(f.Value)
		extra = append(extra, f)
	}
	r.Extra = extra
}
