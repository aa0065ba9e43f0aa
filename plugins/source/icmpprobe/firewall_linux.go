//go:build linux

package icmpprobe

import (
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
)

// newFirewall returns the backend cfg selects; with auto, iptables when
// the iptables command is the legacy (x_tables) one, whose rules nftables
// does not see, else nftables.
func newFirewall(cfg Firewall, log *slog.Logger) (firewall, error) {
	backend := cfg.Backend
	if backend == BackendAuto || backend == "" {
		backend = detectBackend(cfg.IPTablesPath)
		log.Info("firewall backend chosen", "backend", backend)
	}
	switch backend {
	case BackendIPTables:
		f, err := newIPTFirewall(cfg.Interface, cfg.IPTablesPath, log)
		if err != nil {
			return nil, err
		}
		return f, nil
	default:
		f, err := newNFTFirewall(cfg.Interface, log)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
}

// detectBackend is iptables when `IPTABLES --version` reports the legacy
// mode ("iptables v1.8.9 (legacy)", or no mode before 1.8), else nftables
// (also when there is no iptables command).
func detectBackend(path string) string {
	if path == "" {
		path = "iptables"
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil || strings.Contains(string(out), "nf_tables") {
		return BackendNFTables
	}
	return BackendIPTables
}

// ip6tablesPath is the IPv6 twin of an iptables command:
// /usr/sbin/iptables-legacy → /usr/sbin/ip6tables-legacy.
func ip6tablesPath(path string) string {
	if path == "" {
		return ""
	}
	i := strings.LastIndex(path, "iptables")
	if i < 0 {
		return path
	}
	return fmt.Sprintf("%sip6tables%s", path[:i], path[i+len("iptables"):])
}
