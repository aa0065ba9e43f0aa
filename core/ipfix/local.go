package ipfix

import "github.com/weir-flow/weir/core/flow"

// Weir-local IEs.
//
// Weir has no enterprise number of its own. The IEs its plugins emit that
// neither IANA nor Antrea define are numbered in Antrea's PEN 56506 from
// element 32000 up, far above Antrea's own (1–172 in go-ipfix v0.17.0), so
// that an Antrea-aware collector keeps every other IE of the record and
// sees these as unknown Antrea IEs rather than rejecting a foreign PEN. They
// are named here, so exporters print them by name (export.jsonl) and
// [LookupIEByName] resolves them like registry IEs.
//
// Allocation (one block per plugin; add new blocks after the last):
//
//	32000–32009  source.conntrack: ctZone, ctMark
//	32010–32019  source.icmpprobe: RTTs, lost requests, last reply
var localIEs = []struct {
	key  flow.IEKey
	info IEInfo
}{
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32000}, IEInfo{Name: "ctZone", Type: Unsigned16, Length: 2}},
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32001}, IEInfo{Name: "ctMark", Type: Unsigned32, Length: 4}},
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32010}, IEInfo{Name: "minimumRttMilliseconds", Type: Float64, Length: 8}},
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32011}, IEInfo{Name: "meanRttMilliseconds", Type: Float64, Length: 8}},
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32012}, IEInfo{Name: "maximumRttMilliseconds", Type: Float64, Length: 8}},
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32013}, IEInfo{Name: "lastRttMilliseconds", Type: Float64, Length: 8}},
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32014}, IEInfo{Name: "lostPacketDeltaCount", Type: Unsigned64, Length: 8}},
	{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32015}, IEInfo{Name: "lastReplyMilliseconds", Type: DateTimeMilliseconds, Length: 8}},
}

// LocalIEs returns the Weir-local IEs (see the allocation above), for
// collectors that must be taught them (a go-ipfix registry, a tshark
// profile).
func LocalIEs() map[flow.IEKey]IEInfo {
	m := make(map[flow.IEKey]IEInfo, len(localIEs))
	for _, l := range localIEs {
		m[l.key] = l.info
	}
	return m
}
