//go:build !linux

package icmpprobe

import (
	"errors"
	"log/slog"
)

// RuleTag is the comment every managed rule carries.
const RuleTag = "weir-icmpprobe"

type firewall struct{}

func newFirewall(string, *slog.Logger) (*firewall, error) {
	return nil, errors.New("firewall.manage needs Linux nftables")
}
func (*firewall) install() error { return nil }
func (*firewall) remove() error  { return nil }
func (*firewall) close()         {}
