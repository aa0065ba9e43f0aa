package conntrack

import (
	"errors"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// ctnetlink attribute and message numbers (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctMsgGet         = 1 // IPCTNL_MSG_CT_GET
	ctaTupleOrig     = 1
	ctaTupleProto    = 2 // CTA_TUPLE_PROTO, inside CTA_TUPLE_ORIG
	ctaProtoNum      = 1 // CTA_PROTO_NUM, inside CTA_TUPLE_PROTO
	ctaMark          = 8
	ctaZone          = 18
	ctaMarkMask      = 21
	ctaFilter        = 25
	ctaFilterOrigFl  = 1      // CTA_FILTER_ORIG_FLAGS, inside CTA_FILTER
	filterFProtoNum  = 1 << 3 // CTA_FILTER_F_CTA_PROTO_NUM
	maxKernelFilters = 16     // dump requests per poll before filtering in user space instead
)

// dumpRequest is one kernel dump: every connection, or those of one
// protocol and/or zone and/or mark (ctnetlink filters them in the kernel,
// Linux ≥ 5.8 for the protocol, ≥ 6.8 for the zone; older kernels refuse
// the request and Weir falls back to one unfiltered dump). Whatever the
// kernel does, every flow is filtered again in user space.
type dumpRequest struct {
	family   netfilter.ProtoFamily // ProtoUnspec: both; a protocol filter needs one
	proto    int                   // -1: any
	zone     int                   // -1: any
	mark     bool
	markVal  uint32
	markMask uint32
}

func (d dumpRequest) message() (netlink.Message, error) {
	var attrs []netfilter.Attribute
	if d.proto >= 0 {
		attrs = append(attrs,
			netfilter.Attribute{Type: ctaTupleOrig, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{
					{Type: ctaProtoNum, Data: []byte{uint8(d.proto)}},
				}},
			}},
			netfilter.Attribute{Type: ctaFilter, Nested: true, Children: []netfilter.Attribute{
				// NLA_U32: host byte order.
				{Type: ctaFilterOrigFl, Data: nativeUint32(filterFProtoNum)},
			}},
		)
	}
	if d.zone >= 0 {
		attrs = append(attrs, netfilter.Attribute{Type: ctaZone, Data: netfilter.Uint16Bytes(uint16(d.zone))})
	}
	if d.mark {
		attrs = append(attrs,
			netfilter.Attribute{Type: ctaMark, Data: netfilter.Uint32Bytes(d.markVal)},
			netfilter.Attribute{Type: ctaMarkMask, Data: netfilter.Uint32Bytes(d.markMask)})
	}
	return netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ctMsgGet,
		Family:      d.family,
		Flags:       netlink.Request | netlink.Dump,
	}, attrs)
}

func nativeUint32(v uint32) []byte {
	var b [4]byte
	netlinkNative.PutUint32(b[:], v)
	return b[:]
}

// isRefused reports whether a dump error means the kernel does not support
// the filter (so Weir retries without it).
func isRefused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP)
}
