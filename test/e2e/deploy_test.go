package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/weir-flow/weir/core/config"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/test/weirtest"
)

// TestSystemdUnit: deploy/systemd/weir.service passes systemd-analyze
// verify (with this test's weir binary and a valid config in place of the
// installed paths) and reloads with SIGHUP after validating.
func TestSystemdUnit(t *testing.T) {
	needTools(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join(weirtest.RepoRoot(), "deploy/systemd/weir.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=exec", "ExecReload=/bin/kill -HUP $MAINPID", "ExecReload=/usr/local/bin/weir validate", "KillMode=mixed", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("weir.service lacks %q", want)
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(cfg, []byte("pipeline:\n  sources: [{source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n  exporters: [{export.jsonl: {}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	local := strings.NewReplacer("/usr/local/bin/weir", weirBin, "/etc/weir/weir.yaml", cfg).Replace(string(unit))
	path := filepath.Join(dir, "weir.service")
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "weir.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// What ExecStartPre and ExecReload run.
	if out, err := exec.Command(weirBin, "validate", cfg).CombinedOutput(); err != nil {
		t.Errorf("weir validate: %v\n%s", err, out)
	}
}

// TestKubernetesConfigMap: the pipeline the Kubernetes manifests ship
// parses and validates, and the Deployment probes and ports match it.
func TestKubernetesConfigMap(t *testing.T) {
	root := filepath.Join(weirtest.RepoRoot(), "deploy/kubernetes")
	var cm struct {
		Data map[string]string `json:"data"`
	}
	data, err := os.ReadFile(filepath.Join(root, "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(cm.Data["weir.yaml"]), nil)
	if err != nil {
		t.Fatalf("the ConfigMap's weir.yaml: %v", err)
	}
	if err := cfg.Runnable(); err != nil {
		t.Error(err)
	}
	if cfg.Telemetry.MetricsAddress != ":9464" || !cfg.Reload.Watch {
		t.Errorf("weir.yaml: metrics_address %q, reload.watch %v; want :9464 and true", cfg.Telemetry.MetricsAddress, cfg.Reload.Watch)
	}
	dep, err := os.ReadFile(filepath.Join(root, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"path: /healthz", "path: /readyz", "containerPort: 9464", "containerPort: 4739, protocol: UDP", "containerPort: 4739, protocol: TCP", "/etc/weir/weir.yaml"} {
		if !strings.Contains(string(dep), want) {
			t.Errorf("deployment.yaml lacks %q", want)
		}
	}
}
