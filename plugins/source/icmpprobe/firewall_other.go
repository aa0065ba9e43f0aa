//go:build !linux

package icmpprobe

import (
	"errors"
	"log/slog"
)

func newFirewall(Firewall, *slog.Logger) (firewall, error) {
	return nil, errors.New("firewall.manage needs Linux (nftables or iptables)")
}
