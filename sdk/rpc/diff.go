package rpc

import (
	"bytes"
	"math/bits"
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/rpchost/wire"
)

// diff appends the updates that turn before into after, as record rec, to
// ans: strings through its table, the rest as ABI updates. It gives the same
// updates as abi.Updates.Diff, faster: it compares only the
// fields present in either record instead of asking every field whether it
// is present, which dominated an enricher's cost.
//
// pb is presence(before), which the caller may know for less.
func diff(ans *wire.AnswerWriter, rec int, before, after *flow.Record, pb flow.FieldSet) {
	u := &ans.Updates
	pa := presence(after)
	for w := range pb {
		for word := pb[w] | pa[w]; word != 0; word &= word - 1 {
			f := flow.FieldID(w*64 + bits.TrailingZeros64(word))
			bh, ah := pb.Has(f), pa.Has(f)
			if !ah {
				u.Clear(rec, f) // bh: present before only
				continue
			}
			switch slot := slots[f]; slot.kind {
			case flow.KindAddress:
				a := *(*netip.Addr)(unsafe.Add(unsafe.Pointer(after), slot.off))
				if !bh || *(*netip.Addr)(unsafe.Add(unsafe.Pointer(before), slot.off)) != a {
					u.SetAddr(rec, f, a)
				}
			case flow.KindString:
				s := *(*string)(unsafe.Add(unsafe.Pointer(after), slot.off))
				if !bh || *(*string)(unsafe.Add(unsafe.Pointer(before), slot.off)) != s {
					ans.SetString(rec, f, s)
				}
			default:
				if v := after.Uint(f); !bh || before.Uint(f) != v {
					u.SetUint(rec, f, v)
				}
			}
		}
	}
	if !sameExtra(before.Extra, after.Extra) {
		// Only Extra differs from here: let abi diff it against a copy
		// whose typed fields already match.
		typed := *after
		typed.Extra = before.Extra
		u.Diff(rec, &typed, after)
	}
}

// slots are each field's kind and offset in flow.Record, so that diff
// reads fields without Record's per-field switches.
var slots = func() (s [256]struct {
	kind flow.Kind
	off  uintptr
}) {
	for i := range flow.Fields {
		s[i].kind = flow.Fields[i].Kind
		s[i].off = flow.SlotOf(flow.FieldID(i)).Offset
	}
	return s
}()

// presence is the set of fields r.Has reports: Present, plus the string
// fields that are set without their bit.
func presence(r *flow.Record) flow.FieldSet {
	s := r.Present
	str := func(v string, f flow.FieldID) {
		if v != "" {
			s.Add(f)
		}
	}
	str(r.SourcePodNamespace, flow.SourcePodNamespace)
	str(r.SourcePodName, flow.SourcePodName)
	str(r.DestinationPodNamespace, flow.DestinationPodNamespace)
	str(r.DestinationPodName, flow.DestinationPodName)
	str(r.SourceNodeName, flow.SourceNodeName)
	str(r.DestinationNodeName, flow.DestinationNodeName)
	str(r.DestinationServicePortName, flow.DestinationServicePortName)
	str(r.IngressNetworkPolicyName, flow.IngressNetworkPolicyName)
	str(r.IngressNetworkPolicyNamespace, flow.IngressNetworkPolicyNamespace)
	str(r.IngressNetworkPolicyRuleName, flow.IngressNetworkPolicyRuleName)
	str(r.EgressNetworkPolicyName, flow.EgressNetworkPolicyName)
	str(r.EgressNetworkPolicyNamespace, flow.EgressNetworkPolicyNamespace)
	str(r.EgressNetworkPolicyRuleName, flow.EgressNetworkPolicyRuleName)
	str(r.TCPState, flow.TCPState)
	str(r.EgressNodeName, flow.EgressNodeName)
	str(r.SourcePodLabels, flow.SourcePodLabels)
	str(r.DestinationPodLabels, flow.DestinationPodLabels)
	return s
}

func sameExtra(a, b []flow.Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Enterprise != y.Enterprise || x.Element != y.Element || x.Variable != y.Variable || !bytes.Equal(x.Value, y.Value) {
			return false
		}
	}
	return true
}
