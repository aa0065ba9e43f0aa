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
