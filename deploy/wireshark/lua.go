// Package wireshark generates weir.lua, a Wireshark/tshark extension that
// names the IEs of Antrea's enterprise (PEN 56506): Antrea's own, the Flow
// Aggregator's (packetTotalCountFromSourceNode, throughput…) and Weir's
// local ones (core/ipfix/local.go), which Wireshark 4.0 shows only as
// "Enterprise Private entry: (Project Antrea) Type N" bytes. The file is
// generated from Weir's IE registry so that it never drifts:
//
//	go generate ./deploy/wireshark
//
// and TestLuaUpToDate fails when the checked-in weir.lua differs.
package wireshark

//go:generate go run ./gen -o weir.lua

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

// field is one IE as the Lua script declares it.
type field struct {
	id    uint16
	proto string // "antrea" or "weir" (Weir-local)
	name  string
	typ   ipfix.DataType
}

// fields lists PEN 56506's IEs by element ID: the registry's (go-ipfix's
// Antrea IEs and Weir's local ones).
func fields() []field {
	local := ipfix.LocalIEs()
	var out []field
	for id := 0; id < 1<<15; id++ { // IPFIX element IDs are 15 bits (RFC 7011 §3.2)
		k := flow.IEKey{Enterprise: flow.AntreaPEN, Element: uint16(id)}
		info, ok := ipfix.LookupIE(k)
		if !ok {
			continue
		}
		proto := "antrea"
		if _, ok := local[k]; ok {
			proto = "weir"
		}
		out = append(out, field{uint16(id), proto, info.Name, info.Type})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// kind is how the script decodes a type: a ProtoField constructor and the
// decoder function of the script (see header.lua's decoders).
func kind(t ipfix.DataType) (ctor, dec string) {
	switch t {
	case ipfix.Unsigned8, ipfix.Unsigned16, ipfix.Unsigned32:
		return "ProtoField.uint32(%q, %q, base.DEC)", "uint"
	case ipfix.Unsigned64:
		return "ProtoField.uint64(%q, %q, base.DEC)", "uint64"
	case ipfix.Signed8, ipfix.Signed16, ipfix.Signed32:
		return "ProtoField.int32(%q, %q, base.DEC)", "int"
	case ipfix.Signed64:
		return "ProtoField.int64(%q, %q, base.DEC)", "int64"
	case ipfix.Float32, ipfix.Float64:
		return "ProtoField.double(%q, %q)", "float"
	case ipfix.Boolean:
		return "ProtoField.uint8(%q, %q, base.DEC, {[1] = \"true\", [2] = \"false\"})", "uint"
	case ipfix.MACAddress:
		return "ProtoField.ether(%q, %q)", "raw6"
	case ipfix.String:
		return "ProtoField.string(%q, %q)", "string"
	case ipfix.DateTimeSeconds:
		return "ProtoField.absolute_time(%q, %q, base.UTC)", "seconds"
	case ipfix.DateTimeMilliseconds:
		return "ProtoField.absolute_time(%q, %q, base.UTC)", "milliseconds"
	case ipfix.DateTimeMicroseconds, ipfix.DateTimeNanoseconds:
		return "ProtoField.absolute_time(%q, %q, base.UTC)", "ntp"
	case ipfix.IPv4Address:
		return "ProtoField.ipv4(%q, %q)", "raw4"
	case ipfix.IPv6Address:
		return "ProtoField.ipv6(%q, %q)", "raw16"
	}
	return "ProtoField.bytes(%q, %q)", "raw"
}

// Lua returns the script.
func Lua() []byte {
	var b bytes.Buffer
	b.WriteString(header)
	for _, f := range fields() {
		ctor, dec := kind(f.typ)
		abbr := f.proto + "." + f.name
		fmt.Fprintf(&b, "ie(%s, %d, %s, %q) -- %s\n", f.proto, f.id, fmt.Sprintf(ctor, abbr, f.name), dec, f.typ)
	}
	b.WriteString(footer)
	return b.Bytes()
}
