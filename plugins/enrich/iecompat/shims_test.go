package iecompat_test

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"
)

// shippedFiles are the shim files in configs/shims, relative to the
// repository root.
func shippedFiles(t testing.TB) []string {
	t.Helper()
	root := repoRoot(t)
	paths, err := filepath.Glob(filepath.Join(root, "configs", "shims", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 3 {
		t.Fatalf("found %d shim files in configs/shims, want at least 3", len(paths))
	}
	var rel []string
	for _, p := range paths {
		r, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		rel = append(rel, r)
	}
	return rel
}

func shippedShims(t testing.TB) *iecompat.Shims {
	t.Helper()
	cfg := &iecompat.Config{Files: shippedFiles(t)}
	if err := cfg.Check(context.Background(), repoRoot(t)); err != nil {
		t.Fatal(err)
	}
	set := plugin.NopSettings(iecompat.ID)
	set.BaseDir = repoRoot(t)
	s, err := iecompat.New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestShippedShimFilesLoad(t *testing.T) {
	for _, f := range shippedFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg := &iecompat.Config{Files: []string{f}}
			if err := cfg.Check(context.Background(), repoRoot(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestShippedAntreaShims(t *testing.T) {
	s := shippedShims(t)
	b := flow.NewBatch(0)

	// An exporter built with go-ipfix < v0.5.1: 2-byte rule priorities.
	oldPrio := rec(b, ie(antrea, 116, 0x80, 0x01), ie(antrea, 119, 0, 0, 0, 5))
	// Antrea before egressNodeName, traffic through an Egress.
	oldEgress := rec(b, str(antrea, egrName, "egress-a"))
	// Antrea with egressNodeName.
	newEgress := rec(b, str(antrea, egrName, "egress-a"))
	newEgress.SetString(flow.EgressNodeName, "node-1")
	// No Egress at all: egressName sent empty, as Antrea does.
	noEgress := rec(b, str(antrea, egrName, ""))
	// destinationClusterIPv4 only (old) and destinationServiceIPv6 only (new).
	oldSvc := rec(b)
	oldSvc.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr("10.96.0.10"))
	newSvc := rec(b, ie(antrea, 169, netip.MustParseAddr("fd00:10:96::a").AsSlice()...))

	process(t, s, b)

	if got := extra(oldPrio, antrea, 116); !bytes.Equal(got, []byte{0, 0, 0x80, 0x01}) {
		t.Errorf("ingressNetworkPolicyRulePriority %x, want 00008001 (zero-extended)", got)
	}
	if got := extra(oldPrio, antrea, 119); !bytes.Equal(got, []byte{0, 0, 0, 5}) {
		t.Errorf("egressNetworkPolicyRulePriority %x changed", got)
	}
	if oldEgress.EgressNodeName != "unknown" {
		t.Errorf("old exporter egressNodeName %q, want unknown", oldEgress.EgressNodeName)
	}
	if newEgress.EgressNodeName != "node-1" {
		t.Errorf("new exporter egressNodeName %q, want node-1", newEgress.EgressNodeName)
	}
	if noEgress.Has(flow.EgressNodeName) {
		t.Errorf("no-Egress record got egressNodeName %q", noEgress.EgressNodeName)
	}
	if got := extra(oldSvc, antrea, 168); !bytes.Equal(got, []byte{10, 96, 0, 10}) {
		t.Errorf("destinationServiceIPv4 %v", got)
	}
	if oldSvc.DestinationClusterIP != netip.MustParseAddr("10.96.0.10") {
		t.Errorf("destinationClusterIPv4 lost: %v", oldSvc.DestinationClusterIP)
	}
	if newSvc.DestinationClusterIP != netip.MustParseAddr("fd00:10:96::a") || extra(newSvc, antrea, 169) == nil {
		t.Errorf("destinationClusterIPv6 %v, service %x", newSvc.DestinationClusterIP, extra(newSvc, antrea, 169))
	}
}
