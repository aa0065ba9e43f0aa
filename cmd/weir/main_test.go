package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestConfigArg(t *testing.T) {
	tests := []struct {
		name, flag string
		args       []string
		want       string
		wantErr    bool
	}{
		{"none: the embedded default", "", nil, "", false},
		{"-c", "a.yaml", nil, "a.yaml", false},
		{"positional", "", []string{"a.yaml"}, "a.yaml", false},
		{"both, same file", "a.yaml", []string{"a.yaml"}, "a.yaml", false},
		{"both, different files", "a.yaml", []string{"b.yaml"}, "", true},
		{"two positional", "", []string{"a.yaml", "b.yaml"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := configArg(tt.flag, tt.args)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("configArg(%q, %v) = %q, %v", tt.flag, tt.args, got, err)
			}
		})
	}
}

func TestLoopbackTarget(t *testing.T) {
	for in, want := range map[string]string{
		":9464":          "127.0.0.1:9464",
		"0.0.0.0:9464":   "127.0.0.1:9464",
		"[::]:9464":      "[::1]:9464",
		"127.0.0.1:9464": "127.0.0.1:9464",
		"10.1.2.3:9464":  "10.1.2.3:9464",
	} {
		if got, err := loopbackTarget(in); err != nil || got != want {
			t.Errorf("loopbackTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		root := newRootCmd(nil)
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if s := out.String(); !strings.HasPrefix(s, "weir ") || !strings.Contains(s, " go1.") {
			t.Errorf("weir %s printed %q, want \"weir <version> … go1.x\"", args[0], s)
		}
	}
}
