package ipfix

import (
	"encoding/json"
	"testing"

	"github.com/vmware/go-ipfix/pkg/registry"

	"github.com/weir-flow/weir/core/flow"
)

func TestLookupIE(t *testing.T) {
	tests := []struct {
		key  flow.IEKey
		name string
		typ  DataType
		len  uint16
	}{
		{flow.IEKey{Element: 8}, "sourceIPv4Address", IPv4Address, 4},
		{flow.IEKey{Element: 1}, "octetDeltaCount", Unsigned64, 8},
		{flow.IEKey{Element: 160}, "systemInitTimeMilliseconds", DateTimeMilliseconds, 8},
		{flow.IEKey{Element: 156}, "flowStartNanoseconds", DateTimeNanoseconds, 8},
		{flow.IEKey{Enterprise: flow.ReversePEN, Element: 1}, "reverseOctetDeltaCount", Unsigned64, 8},
		{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 101}, "sourcePodName", String, 65535},
		{flow.IEKey{Enterprise: flow.AntreaPEN, Element: 106}, "destinationClusterIPv4", IPv4Address, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, ok := LookupIE(tt.key)
			if !ok || info.Name != tt.name || info.Type != tt.typ || info.Length != tt.len {
				t.Errorf("LookupIE(%v) = %+v, %v", tt.key, info, ok)
			}
			k, info2, ok := LookupIEByName(tt.name)
			if !ok || k != tt.key || info2 != info {
				t.Errorf("LookupIEByName(%q) = %v %+v %v", tt.name, k, info2, ok)
			}
		})
	}
	if _, ok := LookupIE(flow.IEKey{Enterprise: 4242, Element: 1}); ok {
		t.Error("unregistered PEN found")
	}
	if _, _, ok := LookupIEByName("noSuchElement"); ok {
		t.Error("unknown name found")
	}
	// Every typed field is named as its IE in the registry.
	for _, f := range flow.Fields {
		info, ok := LookupIE(flow.IEKey{Enterprise: f.Enterprise, Element: f.Element})
		if !ok || info.Name != f.Name {
			t.Errorf("field %s: registry has %+v", f.Name, info)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		name string
		typ  DataType
		v    []byte
		want string // JSON
	}{
		{"unsigned64 reduced", Unsigned64, []byte{1, 0}, `256`},
		{"unsigned8", Unsigned8, []byte{7}, `7`},
		{"signed16", Signed16, []byte{0xff, 0xfe}, `-2`},
		{"signed64 reduced", Signed64, []byte{0x80}, `-128`},
		{"float64", Float64, u64(0x3ff8000000000000), `1.5`},
		{"float32", Float32, u32(0x3fc00000), `1.5`},
		{"float NaN", Float64, u64(0x7ff8000000000001), `"NaN"`},
		{"boolean true", Boolean, []byte{1}, `true`},
		{"boolean false", Boolean, []byte{2}, `false`},
		{"mac", MACAddress, []byte{0, 0x1b, 0x21, 0xaa, 0xbb, 0xcc}, `"00:1b:21:aa:bb:cc"`},
		{"string", String, []byte("pod-a"), `"pod-a"`},
		{"invalid utf8 string", String, []byte{0xff}, `"ff"`},
		{"seconds", DateTimeSeconds, u32(1_700_000_000), `"2023-11-14T22:13:20Z"`},
		{"milliseconds", DateTimeMilliseconds, u64(1_700_000_000_123), `"2023-11-14T22:13:20.123Z"`},
		{"nanoseconds", DateTimeNanoseconds, rec(u32(1_700_000_000+ntpEpochOffset), u32(1<<31)), `"2023-11-14T22:13:20.5Z"`},
		{"ipv4", IPv4Address, ip("10.0.0.1"), `"10.0.0.1"`},
		{"ipv6", IPv6Address, ip("2001:db8::1"), `"2001:db8::1"`},
		{"octets", OctetArray, []byte{0xde, 0xad}, `"dead"`},
		{"bad length", IPv4Address, []byte{1, 2, 3}, `"010203"`},
		{"list", BasicList, []byte{1}, `"01"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(FormatValue(tt.typ, tt.v))
			if err != nil || string(got) != tt.want {
				t.Errorf("FormatValue = %s (%v), want %s", got, err, tt.want)
			}
		})
	}
	if Unsigned64.String() != "unsigned64" || SubTemplateMultiList.String() != "subTemplateMultiList" || DataType(200).String() != "invalid" {
		t.Error("DataType.String")
	}
}

// TestLocalIEs: the Weir-local IEs take no key or name of the IANA, reverse
// or Antrea registries, are named by LookupIE/LookupIEByName, and classify
// as known when a template names them.
func TestLocalIEs(t *testing.T) {
	loadRegistry() // go-ipfix's registry is loaded once
	seen := map[string]bool{}
	for _, l := range localIEs {
		if ie, err := registry.GetInfoElementFromID(l.key.Element, l.key.Enterprise); err == nil && ie != nil {
			t.Errorf("%v (%s) is go-ipfix's %s", l.key, l.info.Name, ie.Name)
		}
		for _, pen := range []uint32{flow.IANA, flow.ReversePEN, flow.AntreaPEN} {
			if _, err := registry.GetInfoElement(l.info.Name, pen); err == nil {
				t.Errorf("name %s is taken in PEN %d", l.info.Name, pen)
			}
		}
		if seen[l.info.Name] {
			t.Errorf("name %s twice", l.info.Name)
		}
		seen[l.info.Name] = true
		if info, ok := LookupIE(l.key); !ok || info != l.info {
			t.Errorf("LookupIE(%v) = %+v, %v", l.key, info, ok)
		}
		if k, _, ok := LookupIEByName(l.info.Name); !ok || k != l.key {
			t.Errorf("LookupIEByName(%s) = %v, %v", l.info.Name, k, ok)
		}
		loadIEClasses()
		if !classOf(l.key).known {
			t.Errorf("classOf(%v) is unknown", l.key)
		}
	}
}
