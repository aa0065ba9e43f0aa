package flow

import "fmt"

// Enterprise numbers (PENs) that qualify the typed fields' IEs.
const (
	// IANA is the enterprise number of IANA-registered IEs (RFC 7012).
	IANA uint32 = 0
	// ReversePEN marks the reverse direction of an IANA IE (RFC 5103 §6.1).
	ReversePEN uint32 = 29305
	// AntreaPEN is the enterprise number of Antrea's IEs.
	AntreaPEN uint32 = 56506
)

// FieldID names a typed field of [Record]. Its value indexes [Fields] and the
// bits of [FieldSet].
type FieldID uint8

// Kind is how a typed field is stored in a [Record].
type Kind uint8

const (
	// KindUnsigned is an unsignedN IE stored in a Go unsigned integer.
	KindUnsigned Kind = iota + 1
	// KindString is a variable-length UTF-8 string IE.
	KindString
	// KindAddress is an IPv4 or IPv6 address; the field has one IE per family.
	KindAddress
	// KindTime is an absolute time in nanoseconds since the Unix epoch,
	// exported as dateTimeMilliseconds.
	KindTime
)

// FieldInfo describes one typed field: its IANA/Antrea name, the IE it is
// encoded as, and its canonical width when Weir exports it.
type FieldInfo struct {
	ID         FieldID
	Name       string // IE name, e.g. "sourceIPv4Address"; for addresses the IPv4 one
	Name6      string // IPv6 IE name of an address field, else ""
	Enterprise uint32 // PEN of the IE; 0 for IANA
	Element    uint16 // element ID
	Element6   uint16 // element ID of the IPv6 IE of an address field
	Kind       Kind
	Width      uint16 // canonical encoded length in bytes; 0xffff for variable length
}

// Typed fields. Their order is the order of [Fields] and of the flat layout
// (docs/record.md); append new fields at the end, before numFields.
const (
	SourceAddress FieldID = iota
	DestinationAddress
	SourceTransportPort
	DestinationTransportPort
	ProtocolIdentifier
	IPClassOfService
	TCPControlBits
	FlowEndReason
	IngressInterface
	EgressInterface
	FlowStart
	FlowEnd
	OctetDeltaCount
	PacketDeltaCount
	OctetTotalCount
	PacketTotalCount
	ReverseOctetDeltaCount
	ReversePacketDeltaCount
	ReverseOctetTotalCount
	ReversePacketTotalCount
	OriginalExporterAddress
	OriginalObservationDomainID
	SourcePodNamespace
	SourcePodName
	DestinationPodNamespace
	DestinationPodName
	SourceNodeName
	DestinationNodeName
	DestinationClusterIP
	DestinationServicePort
	DestinationServicePortName
	IngressNetworkPolicyName
	IngressNetworkPolicyNamespace
	IngressNetworkPolicyRuleName
	IngressNetworkPolicyRuleAction
	IngressNetworkPolicyType
	EgressNetworkPolicyName
	EgressNetworkPolicyNamespace
	EgressNetworkPolicyRuleName
	EgressNetworkPolicyRuleAction
	EgressNetworkPolicyType
	TCPState
	FlowType
	EgressNodeName
	SourcePodLabels
	DestinationPodLabels
	numFields
)

// NumFields is the number of typed fields.
const NumFields = int(numFields)

const variable = 0xffff

// Fields describes every typed field, indexed by FieldID.
var Fields = [NumFields]FieldInfo{
	SourceAddress:                  {Name: "sourceIPv4Address", Name6: "sourceIPv6Address", Element: 8, Element6: 27, Kind: KindAddress},
	DestinationAddress:             {Name: "destinationIPv4Address", Name6: "destinationIPv6Address", Element: 12, Element6: 28, Kind: KindAddress},
	SourceTransportPort:            {Name: "sourceTransportPort", Element: 7, Kind: KindUnsigned, Width: 2},
	DestinationTransportPort:       {Name: "destinationTransportPort", Element: 11, Kind: KindUnsigned, Width: 2},
	ProtocolIdentifier:             {Name: "protocolIdentifier", Element: 4, Kind: KindUnsigned, Width: 1},
	IPClassOfService:               {Name: "ipClassOfService", Element: 5, Kind: KindUnsigned, Width: 1},
	TCPControlBits:                 {Name: "tcpControlBits", Element: 6, Kind: KindUnsigned, Width: 2},
	FlowEndReason:                  {Name: "flowEndReason", Element: 136, Kind: KindUnsigned, Width: 1},
	IngressInterface:               {Name: "ingressInterface", Element: 10, Kind: KindUnsigned, Width: 4},
	EgressInterface:                {Name: "egressInterface", Element: 14, Kind: KindUnsigned, Width: 4},
	FlowStart:                      {Name: "flowStartMilliseconds", Element: 152, Kind: KindTime, Width: 8},
	FlowEnd:                        {Name: "flowEndMilliseconds", Element: 153, Kind: KindTime, Width: 8},
	OctetDeltaCount:                {Name: "octetDeltaCount", Element: 1, Kind: KindUnsigned, Width: 8},
	PacketDeltaCount:               {Name: "packetDeltaCount", Element: 2, Kind: KindUnsigned, Width: 8},
	OctetTotalCount:                {Name: "octetTotalCount", Element: 85, Kind: KindUnsigned, Width: 8},
	PacketTotalCount:               {Name: "packetTotalCount", Element: 86, Kind: KindUnsigned, Width: 8},
	ReverseOctetDeltaCount:         {Name: "reverseOctetDeltaCount", Enterprise: ReversePEN, Element: 1, Kind: KindUnsigned, Width: 8},
	ReversePacketDeltaCount:        {Name: "reversePacketDeltaCount", Enterprise: ReversePEN, Element: 2, Kind: KindUnsigned, Width: 8},
	ReverseOctetTotalCount:         {Name: "reverseOctetTotalCount", Enterprise: ReversePEN, Element: 85, Kind: KindUnsigned, Width: 8},
	ReversePacketTotalCount:        {Name: "reversePacketTotalCount", Enterprise: ReversePEN, Element: 86, Kind: KindUnsigned, Width: 8},
	OriginalExporterAddress:        {Name: "originalExporterIPv4Address", Name6: "originalExporterIPv6Address", Element: 403, Element6: 404, Kind: KindAddress},
	OriginalObservationDomainID:    {Name: "originalObservationDomainId", Element: 405, Kind: KindUnsigned, Width: 4},
	SourcePodNamespace:             {Name: "sourcePodNamespace", Enterprise: AntreaPEN, Element: 100, Kind: KindString, Width: variable},
	SourcePodName:                  {Name: "sourcePodName", Enterprise: AntreaPEN, Element: 101, Kind: KindString, Width: variable},
	DestinationPodNamespace:        {Name: "destinationPodNamespace", Enterprise: AntreaPEN, Element: 102, Kind: KindString, Width: variable},
	DestinationPodName:             {Name: "destinationPodName", Enterprise: AntreaPEN, Element: 103, Kind: KindString, Width: variable},
	SourceNodeName:                 {Name: "sourceNodeName", Enterprise: AntreaPEN, Element: 104, Kind: KindString, Width: variable},
	DestinationNodeName:            {Name: "destinationNodeName", Enterprise: AntreaPEN, Element: 105, Kind: KindString, Width: variable},
	DestinationClusterIP:           {Name: "destinationClusterIPv4", Name6: "destinationClusterIPv6", Enterprise: AntreaPEN, Element: 106, Element6: 107, Kind: KindAddress},
	DestinationServicePort:         {Name: "destinationServicePort", Enterprise: AntreaPEN, Element: 108, Kind: KindUnsigned, Width: 2},
	DestinationServicePortName:     {Name: "destinationServicePortName", Enterprise: AntreaPEN, Element: 109, Kind: KindString, Width: variable},
	IngressNetworkPolicyName:       {Name: "ingressNetworkPolicyName", Enterprise: AntreaPEN, Element: 110, Kind: KindString, Width: variable},
	IngressNetworkPolicyNamespace:  {Name: "ingressNetworkPolicyNamespace", Enterprise: AntreaPEN, Element: 111, Kind: KindString, Width: variable},
	IngressNetworkPolicyRuleName:   {Name: "ingressNetworkPolicyRuleName", Enterprise: AntreaPEN, Element: 141, Kind: KindString, Width: variable},
	IngressNetworkPolicyRuleAction: {Name: "ingressNetworkPolicyRuleAction", Enterprise: AntreaPEN, Element: 139, Kind: KindUnsigned, Width: 1},
	IngressNetworkPolicyType:       {Name: "ingressNetworkPolicyType", Enterprise: AntreaPEN, Element: 115, Kind: KindUnsigned, Width: 1},
	EgressNetworkPolicyName:        {Name: "egressNetworkPolicyName", Enterprise: AntreaPEN, Element: 112, Kind: KindString, Width: variable},
	EgressNetworkPolicyNamespace:   {Name: "egressNetworkPolicyNamespace", Enterprise: AntreaPEN, Element: 113, Kind: KindString, Width: variable},
	EgressNetworkPolicyRuleName:    {Name: "egressNetworkPolicyRuleName", Enterprise: AntreaPEN, Element: 142, Kind: KindString, Width: variable},
	EgressNetworkPolicyRuleAction:  {Name: "egressNetworkPolicyRuleAction", Enterprise: AntreaPEN, Element: 140, Kind: KindUnsigned, Width: 1},
	EgressNetworkPolicyType:        {Name: "egressNetworkPolicyType", Enterprise: AntreaPEN, Element: 118, Kind: KindUnsigned, Width: 1},
	TCPState:                       {Name: "tcpState", Enterprise: AntreaPEN, Element: 136, Kind: KindString, Width: variable},
	FlowType:                       {Name: "flowType", Enterprise: AntreaPEN, Element: 137, Kind: KindUnsigned, Width: 1},
	EgressNodeName:                 {Name: "egressNodeName", Enterprise: AntreaPEN, Element: 157, Kind: KindString, Width: variable},
	SourcePodLabels:                {Name: "sourcePodLabels", Enterprise: AntreaPEN, Element: 143, Kind: KindString, Width: variable},
	DestinationPodLabels:           {Name: "destinationPodLabels", Enterprise: AntreaPEN, Element: 144, Kind: KindString, Width: variable},
}

// IEKey identifies an IE: enterprise number and element ID (RFC 7011 §3.2).
type IEKey struct {
	Enterprise uint32
	Element    uint16
}

func (k IEKey) String() string {
	if k.Enterprise == 0 {
		return fmt.Sprintf("%d", k.Element)
	}
	return fmt.Sprintf("%d/%d", k.Enterprise, k.Element)
}

var (
	byName = map[string]FieldID{}
	byIE   = map[IEKey]FieldID{}
)

func init() {
	for i := range Fields {
		f := &Fields[i]
		f.ID = FieldID(i)
		if f.Kind == KindAddress {
			f.Width = 0 // 4 or 16, by family
		}
		byName[f.Name] = f.ID
		byIE[IEKey{f.Enterprise, f.Element}] = f.ID
		if f.Name6 != "" {
			byName[f.Name6] = f.ID
			byIE[IEKey{f.Enterprise, f.Element6}] = f.ID
		}
	}
}

// FieldByName returns the typed field of an IE name such as
// "sourceIPv6Address" or "sourcePodName".
func FieldByName(name string) (FieldID, bool) {
	id, ok := byName[name]
	return id, ok
}

// FieldByIE returns the typed field that stores IE k, if any.
func FieldByIE(k IEKey) (FieldID, bool) {
	id, ok := byIE[k]
	return id, ok
}

// Info returns the description of f.
func (f FieldID) Info() *FieldInfo { return &Fields[f] }

func (f FieldID) String() string {
	if int(f) < NumFields {
		return Fields[f].Name
	}
	return fmt.Sprintf("FieldID(%d)", uint8(f))
}

// FieldSet is a set of typed fields, one bit per FieldID.
type FieldSet [2]uint64

// Has reports whether f is in s.
func (s *FieldSet) Has(f FieldID) bool { return s[f>>6]&(1<<(f&63)) != 0 }

// Add puts f in s.
func (s *FieldSet) Add(f FieldID) { s[f>>6] |= 1 << (f & 63) }

// Remove takes f out of s.
func (s *FieldSet) Remove(f FieldID) { s[f>>6] &^= 1 << (f & 63) }
