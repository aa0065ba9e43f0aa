package weir

import (
	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/sdk/wasm/internal/guest"
)

// Record is a flow record: typed fields named after their IPFIX IEs (see
// [flow.Record] for names, units and IE numbers) and Extra, the other IEs
// verbatim.
//
// Set typed fields through the Set methods (SetUint, SetString, SetAddr)
// or mark them in Present: an enricher's changes are found by comparing
// presence and values with what the host sent.
type Record = flow.Record

// Field is an IE kept verbatim in Record.Extra.
type Field = flow.Field

// FieldID names a typed field of Record.
type FieldID = flow.FieldID

// Typed fields, for [Reads] and the Record accessors (Uint, String, Addr).
const (
	SourceAddress                  = flow.SourceAddress                  // sourceIPv4Address (8) / sourceIPv6Address (27)
	DestinationAddress             = flow.DestinationAddress             // destinationIPv4Address (12) / destinationIPv6Address (28)
	SourceTransportPort            = flow.SourceTransportPort            // sourceTransportPort (7)
	DestinationTransportPort       = flow.DestinationTransportPort       // destinationTransportPort (11)
	ProtocolIdentifier             = flow.ProtocolIdentifier             // protocolIdentifier (4), IANA protocol number
	IPClassOfService               = flow.IPClassOfService               // ipClassOfService (5)
	TCPControlBits                 = flow.TCPControlBits                 // tcpControlBits (6)
	FlowEndReason                  = flow.FlowEndReason                  // flowEndReason (136)
	IngressInterface               = flow.IngressInterface               // ingressInterface (10)
	EgressInterface                = flow.EgressInterface                // egressInterface (14)
	FlowStart                      = flow.FlowStart                      // flowStartMilliseconds (152), nanoseconds since epoch in Record
	FlowEnd                        = flow.FlowEnd                        // flowEndMilliseconds (153), nanoseconds since epoch in Record
	OctetDeltaCount                = flow.OctetDeltaCount                // octetDeltaCount (1), octets
	PacketDeltaCount               = flow.PacketDeltaCount               // packetDeltaCount (2), packets
	OctetTotalCount                = flow.OctetTotalCount                // octetTotalCount (85)
	PacketTotalCount               = flow.PacketTotalCount               // packetTotalCount (86)
	ReverseOctetDeltaCount         = flow.ReverseOctetDeltaCount         // reverseOctetDeltaCount (1, PEN 29305)
	ReversePacketDeltaCount        = flow.ReversePacketDeltaCount        // reversePacketDeltaCount (2, PEN 29305)
	ReverseOctetTotalCount         = flow.ReverseOctetTotalCount         // reverseOctetTotalCount (85, PEN 29305)
	ReversePacketTotalCount        = flow.ReversePacketTotalCount        // reversePacketTotalCount (86, PEN 29305)
	OriginalExporterAddress        = flow.OriginalExporterAddress        // originalExporterIPv4Address (403) / IPv6 (404)
	OriginalObservationDomainID    = flow.OriginalObservationDomainID    // originalObservationDomainId (405)
	SourcePodNamespace             = flow.SourcePodNamespace             // sourcePodNamespace (Antrea, PEN 56506)
	SourcePodName                  = flow.SourcePodName                  // sourcePodName (Antrea)
	DestinationPodNamespace        = flow.DestinationPodNamespace        // destinationPodNamespace (Antrea)
	DestinationPodName             = flow.DestinationPodName             // destinationPodName (Antrea)
	SourceNodeName                 = flow.SourceNodeName                 // sourceNodeName (Antrea)
	DestinationNodeName            = flow.DestinationNodeName            // destinationNodeName (Antrea)
	DestinationClusterIP           = flow.DestinationClusterIP           // destinationClusterIPv4 / IPv6 (Antrea)
	DestinationServicePort         = flow.DestinationServicePort         // destinationServicePort (Antrea)
	DestinationServicePortName     = flow.DestinationServicePortName     // destinationServicePortName (Antrea)
	IngressNetworkPolicyName       = flow.IngressNetworkPolicyName       // ingressNetworkPolicyName (Antrea)
	IngressNetworkPolicyNamespace  = flow.IngressNetworkPolicyNamespace  // ingressNetworkPolicyNamespace (Antrea)
	IngressNetworkPolicyRuleName   = flow.IngressNetworkPolicyRuleName   // ingressNetworkPolicyRuleName (Antrea)
	IngressNetworkPolicyRuleAction = flow.IngressNetworkPolicyRuleAction // ingressNetworkPolicyRuleAction (Antrea)
	IngressNetworkPolicyType       = flow.IngressNetworkPolicyType       // ingressNetworkPolicyType (Antrea)
	EgressNetworkPolicyName        = flow.EgressNetworkPolicyName        // egressNetworkPolicyName (Antrea)
	EgressNetworkPolicyNamespace   = flow.EgressNetworkPolicyNamespace   // egressNetworkPolicyNamespace (Antrea)
	EgressNetworkPolicyRuleName    = flow.EgressNetworkPolicyRuleName    // egressNetworkPolicyRuleName (Antrea)
	EgressNetworkPolicyRuleAction  = flow.EgressNetworkPolicyRuleAction  // egressNetworkPolicyRuleAction (Antrea)
	EgressNetworkPolicyType        = flow.EgressNetworkPolicyType        // egressNetworkPolicyType (Antrea)
	TCPState                       = flow.TCPState                       // tcpState (Antrea)
	FlowType                       = flow.FlowType                       // flowType (Antrea)
	EgressNodeName                 = flow.EgressNodeName                 // egressNodeName (Antrea)
	SourcePodLabels                = flow.SourcePodLabels                // sourcePodLabels (Antrea), JSON object
	DestinationPodLabels           = flow.DestinationPodLabels           // destinationPodLabels (Antrea), JSON object
)

// Option narrows what the host sends of each record.
type Option func(*abi.Mask)

// Reads limits the typed fields the host encodes to fields: the others
// read as absent (zero). Without Reads or ReadsExtra/ReadsExporter, the
// host sends every part of every record. A filter that reads one field
// costs a few nanoseconds per record instead of a few hundred.
func Reads(fields ...FieldID) Option {
	return func(m *abi.Mask) {
		for _, f := range fields {
			m.Fields.Add(f)
		}
	}
}

// ReadsExtra makes the host send Record.Extra (the IEs without a typed
// field) along with the fields of Reads.
func ReadsExtra() Option { return func(m *abi.Mask) { m.Flags |= abi.FlagExtra } }

// ReadsExporter makes the host send Record.Exporter and
// Record.ObservationDomainID along with the fields of Reads.
func ReadsExporter() Option { return func(m *abi.Mask) { m.Flags |= abi.FlagExporter } }

// mask returns what the plugin reads, in the columnar layout (docs/abi.md):
// the batch then carries only those parts, by column, which the host
// writes and the SDK reads in few bytes.
func mask(opts []Option) abi.Mask {
	if len(opts) == 0 {
		return abi.All
	}
	m := abi.Mask{Flags: abi.FlagColumns}
	for _, o := range opts {
		o(&m)
	}
	return m
}

// RegisterFilter makes the module a filter: keep is called for each record
// and the record is dropped when it returns false. keep must not modify r
// (a filter's changes are not sent back), nor retain it after returning.
func RegisterFilter(keep func(r *Record) bool, opts ...Option) {
	guest.Default.Register(guest.Plugin{Kind: abi.KindFilter, Keep: keep, Reads: mask(opts), Init: initFunc()})
}

// RegisterEnricher makes the module an enricher: enrich is called for
// each record and may change its typed fields and Extra IEs; the SDK sends
// the host only what changed. Every record is kept.
func RegisterEnricher(enrich func(r *Record), opts ...Option) {
	guest.Default.Register(guest.Plugin{Kind: abi.KindEnricher, Enrich: enrich, Reads: mask(opts), Init: initFunc()})
}

// RegisterProcessor makes the module both: process may change r, and r is
// dropped when it returns false.
func RegisterProcessor(process func(r *Record) bool, opts ...Option) {
	guest.Default.Register(guest.Plugin{Kind: abi.KindProcessor, Keep: process, Reads: mask(opts), Init: initFunc()})
}

// RegisterInit sets the function that receives the module's config, the
// value of `config:` in the pipeline encoded as JSON ("null" when absent).
// An error rejects the config: its message is what `weir validate` and
// start-up report. It may be called before or after RegisterFilter.
func RegisterInit(init func(config []byte) error) {
	pendingInit = init
	guest.Default.SetInit(init)
}

// SetReads replaces what the plugin reads with reads and more, as given
// when it registered. Call it from the Init function when the config
// makes some fields irrelevant: the host then encodes only what is left.
//
//	if !cfg.UsesPorts {
//		weir.SetReads(weir.Reads(weir.ProtocolIdentifier))
//	}
func SetReads(reads Option, more ...Option) {
	opts := append([]Option{reads}, more...)
	if p, _ := guest.Default.Registered(); p.Batch != nil {
		guest.Default.SetReads(batchMask(opts))
		return
	}
	guest.Default.SetReads(mask(opts))
}

// pendingInit survives a RegisterFilter/RegisterEnricher that comes after
// RegisterInit.
var pendingInit func([]byte) error

func initFunc() func([]byte) error { return pendingInit }
