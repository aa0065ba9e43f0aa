package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

func TestParseSpec(t *testing.T) {
	def := DefaultSpec()
	tests := []struct {
		name string
		in   string
		want func(*Spec)
		err  bool
	}{
		{name: "empty is default", in: "", want: func(*Spec) {}},
		{name: "the issue's example", in: "flows=100000,tcp=0.7,udp=0.2,icmp=0.1,ipv6=0.3,antrea=true,labels=5", want: func(*Spec) {}},
		{name: "partial mix zeroes the rest", in: "tcp=1", want: func(s *Spec) { s.TCP, s.UDP, s.ICMP = 1, 0, 0 }},
		{name: "spaces and case", in: " Flows = 10 , IPV6=1 ", want: func(s *Spec) { s.Flows, s.IPv6 = 10, 1 }},
		{name: "cluster size", in: "pods=10000,nodes=50,namespaces=20,services=0,labels=0,antrea=false,external=0",
			want: func(s *Spec) {
				s.Pods, s.Nodes, s.Namespaces, s.Services, s.Labels, s.Antrea, s.External = 10000, 50, 20, 0, 0, false, 0
			}},
		{name: "unknown key", in: "flow=10", err: true},
		{name: "no value", in: "flows", err: true},
		{name: "zero flows", in: "flows=0", err: true},
		{name: "share above one", in: "ipv6=1.5", err: true},
		{name: "mix above one", in: "tcp=0.8,udp=0.3", err: true},
		{name: "bad bool", in: "antrea=maybe", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if tt.err {
				if !errors.Is(err, ErrSpec) {
					t.Fatalf("ParseSpec(%q) error = %v, want ErrSpec", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.in, err)
			}
			want := def
			tt.want(&want)
			if got != want {
				t.Fatalf("ParseSpec(%q) = %+v, want %+v", tt.in, got, want)
			}
			// String round-trips.
			again, err := ParseSpec(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseSpec(String()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
	t.Run("every problem reported", func(t *testing.T) {
		_, err := ParseSpec("flows=x,ipv6=2,bogus=1")
		for _, key := range []string{"flows", "ipv6", "bogus"} {
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(key)) {
				t.Errorf("error %v does not name %s", err, key)
			}
		}
	})
}

func TestGenerateDeterministic(t *testing.T) {
	spec, _ := ParseSpec("flows=2000")
	a, b := Generate(spec, 7), Generate(spec, 7)
	if a.Len() != 2000 || b.Len() != 2000 {
		t.Fatalf("Len = %d, %d; want 2000", a.Len(), b.Len())
	}
	for i := range a.Batch.Records {
		if !reflect.DeepEqual(a.Batch.Records[i], b.Batch.Records[i]) {
			t.Fatalf("record %d differs between two runs with seed 7:\n%+v\n%+v", i, a.Batch.Records[i], b.Batch.Records[i])
		}
	}
	c := Generate(spec, 8)
	same := 0
	for i := range a.Batch.Records {
		if reflect.DeepEqual(a.Batch.Records[i], c.Batch.Records[i]) {
			same++
		}
	}
	if same > 10 {
		t.Errorf("seeds 7 and 8 share %d of 2000 records", same)
	}
}

func TestGenerateMix(t *testing.T) {
	spec, err := ParseSpec("flows=20000,tcp=0.5,udp=0.3,icmp=0.1,ipv6=0.4,labels=3,external=0.2")
	if err != nil {
		t.Fatal(err)
	}
	in := Generate(spec, 1)
	var tcp, udp, icmp, other, v6, ext, withLabels, svc int
	for _, r := range in.Batch.Records {
		switch r.ProtocolIdentifier {
		case 6:
			tcp++
			if r.TCPState == "" {
				t.Fatalf("TCP record without tcpState: %+v", r)
			}
		case 17:
			udp++
		case 1, 58:
			icmp++
			if (r.ProtocolIdentifier == 58) != r.SourceAddress.Is6() {
				t.Fatalf("ICMP protocol %d on a %v flow", r.ProtocolIdentifier, r.SourceAddress)
			}
		default:
			other++
		}
		if r.SourceAddress.Is6() != r.DestinationAddress.Is6() {
			t.Fatalf("mixed families: %v → %v", r.SourceAddress, r.DestinationAddress)
		}
		if r.SourceAddress.Is6() {
			v6++
		}
		if r.FlowType == 3 {
			ext++
			if r.DestinationPodName != "" {
				t.Fatalf("external flow with a destination Pod: %+v", r)
			}
		}
		if r.SourcePodName == "" || r.SourceNodeName == "" || r.SourcePodNamespace == "" {
			t.Fatalf("Antrea record without source Pod fields: %+v", r)
		}
		if r.DestinationServicePortName != "" {
			svc++
			if !r.DestinationClusterIP.IsValid() || r.DestinationServicePort == 0 {
				t.Fatalf("Service flow without ClusterIP/port: %+v", r)
			}
		}
		if r.SourcePodLabels != "" {
			withLabels++
			var m map[string]string
			if err := json.Unmarshal([]byte(r.SourcePodLabels), &m); err != nil || len(m) != 3 {
				t.Fatalf("sourcePodLabels %q: %v, %d labels; want 3", r.SourcePodLabels, err, len(m))
			}
		}
		if r.FlowStart > r.FlowEnd || r.FlowEnd%1e9 != 0 {
			t.Fatalf("times %d..%d: want start <= end, whole seconds", r.FlowStart, r.FlowEnd)
		}
		if r.FindExtra(flow.IEKey{Enterprise: flow.AntreaPEN, Element: ieThroughput}) == nil {
			t.Fatalf("no throughput IE: %+v", r.Extra)
		}
		if !r.Exporter.IsValid() || r.PacketDeltaCount == 0 || r.OctetDeltaCount < r.PacketDeltaCount {
			t.Fatalf("exporter/counters: %+v", r)
		}
	}
	n := float64(in.Len())
	near := func(name string, got int, want float64) {
		t.Helper()
		if share := float64(got) / n; math.Abs(share-want) > 0.02 {
			t.Errorf("%s share = %.3f, want %.2f ± 0.02", name, share, want)
		}
	}
	near("tcp", tcp, 0.5)
	near("udp", udp, 0.3)
	near("icmp", icmp, 0.1)
	near("other", other, 0.1)
	near("ipv6", v6, 0.4)
	near("external", ext, 0.2)
	if withLabels != in.Len() {
		t.Errorf("%d of %d records carry sourcePodLabels", withLabels, in.Len())
	}
	if svc == 0 {
		t.Error("no flow through a Service")
	}
}

func TestGenerateBare(t *testing.T) {
	spec, _ := ParseSpec("flows=500,antrea=false")
	for _, r := range Generate(spec, 1).Batch.Records {
		if r.SourcePodName != "" || r.FlowType != 0 || len(r.Extra) != 0 || r.SourcePodLabels != "" {
			t.Fatalf("antrea=false record carries Antrea IEs: %+v", r)
		}
		if !r.SourceAddress.IsValid() || r.ProtocolIdentifier == 0 && r.SourceTransportPort != 0 {
			t.Fatalf("bare record: %+v", r)
		}
	}
}

func TestWritePods(t *testing.T) {
	spec, _ := ParseSpec("flows=3000,pods=400,nodes=4,services=12,labels=4")
	var buf bytes.Buffer
	if err := WritePods(&buf, spec, 3); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace string
				Labels          map[string]string
			} `json:"metadata"`
			Status struct {
				PodIPs []struct{ IP string } `json:"podIPs"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		t.Fatalf("decode: %v", err)
	}
	kinds := map[string]int{}
	podIPs := map[netip.Addr]string{}
	for _, it := range list.Items {
		kinds[it.Kind]++
		if it.Kind == "Pod" {
			if len(it.Metadata.Labels) != 4 {
				t.Fatalf("Pod %s has %d labels, want 4", it.Metadata.Name, len(it.Metadata.Labels))
			}
			for _, ip := range it.Status.PodIPs {
				podIPs[netip.MustParseAddr(ip.IP)] = it.Metadata.Namespace + "/" + it.Metadata.Name
			}
		}
	}
	if list.Kind != "List" || kinds["Pod"] != 400 || kinds["Node"] != 4 || kinds["Service"] != 12 {
		t.Fatalf("list kind %q, items %v; want List of 400 Pods, 4 Nodes, 12 Services", list.Kind, kinds)
	}
	// The flows come from exactly these Pods.
	for _, r := range Generate(spec, 3).Batch.Records {
		got, ok := podIPs[r.SourceAddress]
		if !ok || got != r.SourcePodNamespace+"/"+r.SourcePodName {
			t.Fatalf("flow from %v (%s/%s): the Pod list has %q", r.SourceAddress, r.SourcePodNamespace, r.SourcePodName, got)
		}
	}
}
