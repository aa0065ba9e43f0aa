package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// nfdumpAggregated is `nfdump -A srcip,dstip,srcport,dstport,proto` over
// an nfcapd directory: one line per 5-tuple with its summed packets and
// bytes, sorted.
func nfdumpAggregated(t *testing.T, n *nfcapd) (lines []string, records int) {
	t.Helper()
	cmd := exec.Command("nfdump", "-6", "-N", "-q", "-R", n.dir, "-A", "srcip,dstip,srcport,dstport,proto",
		"-o", "fmt:%pr|%sa|%sp|%da|%dp|%pkt|%byt")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump -A: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Split(l, "|"); len(f) == 7 {
			for i := range f {
				f[i] = strings.TrimSpace(f[i])
			}
			lines = append(lines, strings.Join(f, "|"))
		}
	}
	sort.Strings(lines)
	return lines, len(n.flows(t))
}

// TestAggregateSoftflowdMatchesNfdump: softflowd's IPFIX from the shared
// capture through weir's aggregate (RFC 7015 by 5-tuple and observation
// domain), into nfcapd: per 5-tuple, packets and bytes equal what nfdump's
// own aggregation makes of softflowd's records collected directly, with
// fewer records; SIGTERM exports every live flow.
func TestAggregateSoftflowdMatchesNfdump(t *testing.T) {
	needTools(t, "softflowd", "nfcapd", "nfdump")
	capture := weirtest.SharedCapture(t)

	refPort := weirtest.FreePort(t, "udp")
	ref := startNfcapd(t, refPort)
	runSoftflowd(t, capture, refPort)
	time.Sleep(300 * time.Millisecond) // loopback delivery
	ref.stop(t)
	want, refRecords := nfdumpAggregated(t, ref)
	if len(want) == 0 {
		t.Fatal("the reference nfcapd stored no flows")
	}

	outPort := weirtest.FreePort(t, "udp")
	got := startNfcapd(t, outPort)
	inPort := weirtest.FreePort(t, "udp")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  queue: {when_full: block}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:0"}
  processors:
    - aggregate: {}
  exporters:
    - export.ipfix: {address: "127.0.0.1:%d", transport: udp}
`, inPort, outPort))
	runSoftflowd(t, capture, inPort)
	w.WaitMetric(t, "weir_stage_records_in_total", float64(refRecords)) // the source's count
	w.Stop(t)
	time.Sleep(300 * time.Millisecond) // loopback delivery
	got.stop(t)
	have, records := nfdumpAggregated(t, got)
	if strings.Join(have, "\n") != strings.Join(want, "\n") {
		t.Errorf("per 5-tuple totals differ from nfdump's aggregation of softflowd's records:\nweir aggregate:\n%s\nnfdump -A:\n%s",
			strings.Join(have, "\n"), strings.Join(want, "\n"))
	}
	if records > refRecords {
		t.Errorf("aggregate exported %d records, softflowd %d: nothing was aggregated", records, refRecords)
	}
	t.Logf("softflowd: %d records; aggregate: %d records; %d 5-tuples", refRecords, records, len(want))
}
