package podlabels

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestKeyOf(t *testing.T) {
	for _, s := range []string{"10.244.1.5", "0.0.0.0", "255.255.255.255"} {
		v4 := netip.MustParseAddr(s)
		mapped := netip.AddrFrom16(v4.As16())
		if keyOf(v4) != keyOf(mapped) {
			t.Errorf("%s and %s have different keys", v4, mapped)
		}
	}
	if keyOf(netip.MustParseAddr("::a0f4:105")) == keyOf(netip.MustParseAddr("10.244.1.5")) {
		t.Error("an IPv6 address collides with an IPv4 one")
	}
}

func TestTables(t *testing.T) {
	const n = 5000
	ips := newAddrTable(n)
	svcs := newSvcTable(n)
	eps := make([]endpoint, n)
	addr := func(i int) netip.Addr {
		if i%2 == 0 {
			return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		return netip.AddrFrom16([16]byte{0xfd, 0, 14: byte(i >> 8), 15: byte(i)})
	}
	for i := range n {
		eps[i].podName = fmt.Sprint(i)
		if !ips.add(addr(i), &eps[i]) {
			t.Fatalf("add %d: duplicate", i)
		}
		svcs.add(addr(i), uint16(i), 6, fmt.Sprint(i))
	}
	if ips.add(addr(7), &eps[0]) {
		t.Error("second add of one address succeeded")
	}
	for i := range n {
		if ep := ips.get(addr(i)); ep != &eps[i] {
			t.Fatalf("get %s: %v", addr(i), ep)
		}
		if got := svcs.get(addr(i), uint16(i), 6); got != fmt.Sprint(i) {
			t.Fatalf("service %s:%d: %q", addr(i), i, got)
		}
		if got := svcs.get(addr(i), uint16(i), 17); got != "" {
			t.Fatalf("service %s:%d/udp: %q", addr(i), i, got)
		}
	}
	if ep := ips.get(netip.MustParseAddr("192.0.2.1")); ep != nil {
		t.Errorf("miss returned %v", ep)
	}
	if got := svcs.len(); got != n {
		t.Errorf("svc len %d", got)
	}
	// Empty tables answer misses.
	if newAddrTable(0).get(addr(1)) != nil || newSvcTable(0).get(addr(1), 1, 6) != "" {
		t.Error("empty table hit")
	}
}
