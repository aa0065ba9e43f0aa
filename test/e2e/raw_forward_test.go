package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// TestRawForwardingMatchesNfcapdReference: softflowd → weir forwarding raw
// messages (configs/forward.yaml: source.ipfix raw: true → proxy →
// export.ipfix, plus a second exporter for tshark) → nfcapd lists
// exactly the reference's flows with times true to the capture, and tshark
// finds the proxy's originalExporterIPv4Address on every record.
// softflowd's templates carry flowStart/EndSysUpTime, which a copy would
// leave relative to softflowd's uptime in weir's own messages: the
// re-exporter decodes those records (path="decoded") instead of copying.
func TestRawForwardingMatchesNfcapdReference(t *testing.T) {
	needTools(t, "softflowd", "nfcapd", "nfdump", "tshark")
	capture := weirtest.SharedCapture(t)
	ref := referenceFlows(t, capture)

	nfPort, inPort := weirtest.FreePort(t, "udp"), weirtest.FreePort(t, "udp")
	nf := startNfcapd(t, nfPort)
	rec := newUDPRecorder(t)
	w := startWeir(t, shippedConfig(t, "forward.yaml",
		`metrics_address: "127.0.0.1:9464"`, `metrics_address: "{{metrics}}"`,
		`udp: ":4739", tcp: ":4739"`, fmt.Sprintf(`udp: "127.0.0.1:%d", tcp: ""`, inPort),
		`- export.ipfix: {address: "127.0.0.1:4740", transport: udp}`,
		fmt.Sprintf("- export.ipfix: {address: \"127.0.0.1:%d\", transport: udp}\n    - export.ipfix: {address: \"127.0.0.1:%d\", transport: udp, observation_domain_id: 7}", nfPort, rec.port()),
	))
	runSoftflowd(t, capture, inPort)
	w.WaitSample(t, "weir_export_ipfix_raw_records_total", `path="decoded"`, float64(2*len(ref)))
	if got := w.Sample(t, "weir_export_ipfix_raw_records_total", `path="copied"`); got != 0 {
		t.Errorf("%v sysUpTime records copied, want every one decoded", got)
	}
	messages := w.Sample(t, "weir_source_ipfix_messages_total", "")
	w.Stop(t)
	time.Sleep(300 * time.Millisecond)
	nf.stop(t)

	got := nf.flows(t)
	if !slices.Equal(countsOnly(got), countsOnly(ref)) {
		t.Errorf("nfcapd behind weir lists %d flows, the reference %d", len(got), len(ref))
	}
	// Times against the capture's packets (checkTimes matches ports, so
	// TCP and UDP flows: ICMP's type and code stand in nfdump's ports).
	truth := capturePackets(t, capture)
	checked := 0
	for _, f := range got {
		if f.Proto == "6" || f.Proto == "17" {
			checkTimes(t, f, truth)
			checked++
		}
	}
	if checked == 0 {
		t.Error("no TCP or UDP flow to check the times of")
	}
	// One raw record per message, each delivered by both exporters.
	for _, stage := range []string{"exporters[0]", "exporters[1]"} {
		if in, out := w.StageSummary(t, stage); in != int(messages) || out != int(messages) {
			t.Errorf("%s summary in=%d out=%d, want the %v messages", stage, in, out, messages)
		}
	}
	checkTsharkStamps(t, rec, len(ref))
}
