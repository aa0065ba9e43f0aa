package ipfix_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

// Encode a record as IPFIX and decode it back.
func Example() {
	in := flow.NewBatch(1)
	r := in.Append()
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.0.0.1"))
	r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.0.0.2"))
	r.SetUint(flow.ProtocolIdentifier, 6)
	r.SetUint(flow.DestinationTransportPort, 443)
	r.SetString(flow.SourcePodName, "frontend-0")
	r.Extra = append(r.Extra, flow.Field{Element: 82, Variable: true, Value: []byte("eth0")}) // interfaceName

	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: 7})
	dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
	out := flow.NewBatch(0)
	exporter := netip.MustParseAddrPort("192.0.2.1:4739")
	err := enc.Encode(in.Records, time.Unix(1_700_000_000, 0), func(msg []byte) error {
		_, err := dec.Decode(out, msg, exporter)
		return err
	})
	if err != nil {
		panic(err)
	}
	got := out.Records[0]
	info, _ := ipfix.LookupIE(got.Extra[0].Key())
	fmt.Println(got.SourceAddress, got.DestinationAddress, got.ProtocolIdentifier, got.DestinationTransportPort)
	fmt.Println(got.SourcePodName, got.ObservationDomainID, got.Exporter)
	fmt.Println(info.Name, ipfix.FormatValue(info.Type, got.Extra[0].Value))
	// Output:
	// 10.0.0.1 10.0.0.2 6 443
	// frontend-0 7 192.0.2.1:4739
	// interfaceName eth0
}
