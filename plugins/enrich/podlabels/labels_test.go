package podlabels

import (
	"encoding/json"
	"testing"

	"github.com/weir-flow/weir/core/plugin"
)

func TestLabelEncoder(t *testing.T) {
	labels := map[string]string{
		"app":                       "web",
		"app.kubernetes.io/name":    "shop",
		"app.kubernetes.io/version": "1.2",
		"pod-template-hash":         "7d9c5b6f4",
		"tier":                      "frontend",
	}
	tests := []struct {
		name    string
		cfg     Labels
		in      map[string]string
		want    string
		dropped int
	}{
		{name: "all", in: labels,
			want: `{"app":"web","app.kubernetes.io/name":"shop","app.kubernetes.io/version":"1.2","pod-template-hash":"7d9c5b6f4","tier":"frontend"}`},
		{name: "none", in: nil, want: ""},
		{name: "allow exact and glob", cfg: Labels{Allow: []string{"app", "app.kubernetes.io/*"}}, in: labels,
			want: `{"app":"web","app.kubernetes.io/name":"shop","app.kubernetes.io/version":"1.2"}`},
		{name: "deny wins over allow", cfg: Labels{Allow: []string{"app*"}, Deny: []string{"*/version"}}, in: labels,
			want: `{"app":"web","app.kubernetes.io/name":"shop"}`},
		{name: "deny all", cfg: Labels{Deny: []string{"*"}}, in: labels, want: ""},
		{name: "glob in the middle", cfg: Labels{Allow: []string{"app.*/n*e"}}, in: labels,
			want: `{"app.kubernetes.io/name":"shop"}`},
		{name: "cap keeps what fits in key order", cfg: Labels{MaxBytes: 40}, in: labels,
			// {"app":"web","tier":"frontend"} is 32 bytes; the others overflow.
			want: `{"app":"web","tier":"frontend"}`, dropped: 3},
		{name: "cap exact fit", cfg: Labels{MaxBytes: 13}, in: map[string]string{"app": "web"},
			want: `{"app":"web"}`},
		{name: "cap too small for any", cfg: Labels{MaxBytes: 12}, in: map[string]string{"app": "web"},
			want: "", dropped: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := newLabelEncoder(tc.cfg).encode(tc.in)
			if got != tc.want || dropped != tc.dropped {
				t.Errorf("got %s (dropped %d), want %s (dropped %d)", got, dropped, tc.want, tc.dropped)
			}
			if got != "" && !json.Valid([]byte(got)) {
				t.Errorf("invalid JSON %s", got)
			}
			if tc.cfg.MaxBytes > 0 && len(got) > int(tc.cfg.MaxBytes) {
				t.Errorf("%d bytes over the cap of %d", len(got), tc.cfg.MaxBytes)
			}
		})
	}
}

// The encoding matches encoding/json's for a map[string]string, which is
// what Antrea sends.
func TestLabelEncoderMatchesEncodingJSON(t *testing.T) {
	for _, labels := range []map[string]string{
		{"a": `quote " backslash \ slash /`},
		{"ctl": "tab\t nl\n cr\r nul\x00 bell\x07 bs\b ff\f", "html": "<b>&</b>"},
		{"utf8": "héllo 世界 \u2028 \u2029", "bad": "\xff\xfe"},
		{"example.com/k": "", "z": "1", "A": "2"},
	} {
		want, err := json.Marshal(labels)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := newLabelEncoder(Labels{}).encode(labels)
		if got != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

func FuzzLabelEncoder(f *testing.F) {
	f.Add("app", "web", "tier", "db", 0)
	f.Add("k\"", "\xff<", "", "\u2028", 20)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, maxBytes int) {
		if maxBytes < 0 || maxBytes > maxLabelBytes {
			return
		}
		labels := map[string]string{k1: v1, k2: v2}
		got, _ := newLabelEncoder(Labels{MaxBytes: 0}).encode(labels)
		want, _ := json.Marshal(labels)
		if got != string(want) {
			t.Fatalf("got %s want %s", got, want)
		}
		capped, _ := newLabelEncoder(Labels{MaxBytes: configByteSize(maxBytes)}).encode(labels)
		if maxBytes > 0 && len(capped) > maxBytes {
			t.Fatalf("%d bytes over cap %d", len(capped), maxBytes)
		}
		if capped != "" && !json.Valid([]byte(capped)) {
			t.Fatalf("invalid JSON %q", capped)
		}
	})
}

func TestMatch(t *testing.T) {
	tests := []struct {
		p, k string
		want bool
	}{
		{"app", "app", true},
		{"app", "apps", false},
		{"*", "anything/at.all", true},
		{"app*", "app.kubernetes.io/name", true},
		{"*name", "app.kubernetes.io/name", true},
		{"*name", "app.kubernetes.io/names", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "acb", false},
		{"ab*ba", "aba", false},
	}
	for _, tc := range tests {
		if got := match(tc.p, tc.k); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.p, tc.k, got, tc.want)
		}
	}
}

func configByteSize(n int) plugin.ByteSize { return plugin.ByteSize(n) }
