package conntrack

import "encoding/binary"

// netlinkNative is the host byte order of NLA_U32 netlink attributes.
var netlinkNative = binary.NativeEndian
