package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// checkTsharkNames: tshark with deploy/wireshark/weir.lua names the Antrea
// aggregation IEs of export.ipfix's output (pcap, sent to port), and their
// values are those export.jsonl wrote for the same records (recs), compared
// as multisets per IE.
func checkTsharkNames(t *testing.T, pcap string, port int, recs []map[string]any) {
	t.Helper()
	lua := filepath.Join(weirtest.RepoRoot(), "deploy/wireshark/weir.lua")
	ies := []string{
		"throughput", "reverseThroughput", "throughputFromSourceNode", "throughputFromDestinationNode",
		"octetDeltaCountFromSourceNode", "octetDeltaCountFromDestinationNode",
		"packetTotalCountFromSourceNode", "reverseOctetTotalCountFromDestinationNode",
		"flowEndSecondsFromSourceNode", "flowEndSecondsFromDestinationNode", "tcpState",
	}
	args := []string{"-X", "lua_script:" + lua, "-o", "cflow.max_template_fields:0", "-r", pcap,
		"-d", fmt.Sprintf("udp.port==%d,cflow", port), "-T", "fields", "-E", "occurrence=a", "-E", "separator=;"}
	for _, ie := range ies {
		args = append(args, "-e", "antrea."+ie)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark -X lua_script:%s: %v\n%s", lua, err, out)
	}
	got := make([][]string, len(ies))
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		cols := strings.Split(line, ";")
		if len(cols) != len(ies) {
			t.Fatalf("tshark line %q: %d columns, want %d", line, len(cols), len(ies))
		}
		for i, c := range cols {
			if c != "" {
				got[i] = append(got[i], splitValues(c)...)
			}
		}
	}
	for i, ie := range ies {
		var want []string
		for _, r := range recs {
			v, ok := r[ie]
			if !ok {
				continue
			}
			switch v := v.(type) {
			case float64:
				want = append(want, strconv.FormatFloat(v, 'f', -1, 64))
			case string:
				if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
					v = ts.UTC().Format("Jan _2, 2006 15:04:05.000000000 UTC")
				}
				want = append(want, v)
			}
		}
		slices.Sort(want)
		slices.Sort(got[i])
		if len(want) == 0 || !slices.Equal(got[i], want) {
			t.Errorf("antrea.%s: tshark decoded %q, export.jsonl wrote %q", ie, got[i], want)
		}
	}
}

// splitValues splits tshark's comma-joined occurrences; a time value
// ("Jan  1, 1970 00:16:50.000000000 UTC") has a comma of its own.
func splitValues(s string) []string {
	parts := strings.Split(s, ",")
	var out []string
	for i := 0; i < len(parts); i++ {
		if i+1 < len(parts) && strings.HasSuffix(parts[i+1], " UTC") && !strings.HasSuffix(parts[i], " UTC") {
			out = append(out, parts[i]+","+parts[i+1])
			i++
			continue
		}
		out = append(out, parts[i])
	}
	return out
}
