//go:build linux

package icmpprobe

import (
	"bytes"
	"fmt"
	"log/slog"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ICMP types the rules accept.
const (
	icmpEchoReply     = 0
	icmpEchoRequest   = 8
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	icmp6NeighSolicit = 135
	icmp6NeighAdvert  = 136
)

// nftFirewall manages the probe's rules in nftables.
//
// nftables runs every base chain of a hook, and an accept in one does not
// stop a drop in another: rules in a table of Weir's own could not open a
// firewall whose input policy is drop. So the rules go first into every
// existing filter base chain at the input and output hooks (ip, ip6 and
// inet families, iptables-nft's chains included), each tagged with the
// comment "weir-icmpprobe IFACE".
type nftFirewall struct {
	iface string
	tag   []byte
	conn  *nftables.Conn
	log   *slog.Logger
}

func newNFTFirewall(iface string, log *slog.Logger) (*nftFirewall, error) {
	// A lasting connection stays in the network namespace it was made in,
	// so Shutdown cleans up where Start installed.
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &nftFirewall{iface: iface, tag: userdata.AppendString(nil, userdata.TypeComment, RuleTag+" "+iface), conn: c, log: log}, nil
}

func (f *nftFirewall) close() { _ = f.conn.CloseLasting() }

// chains returns the filter base chains at the input and output hooks.
func (f *nftFirewall) chains() ([]*nftables.Chain, error) {
	all, err := f.conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var out []*nftables.Chain
	for _, c := range all {
		if c.Hooknum == nil || c.Type != nftables.ChainTypeFilter {
			continue
		}
		switch c.Table.Family {
		case nftables.TableFamilyIPv4, nftables.TableFamilyIPv6, nftables.TableFamilyINet:
		default:
			continue
		}
		if *c.Hooknum == *nftables.ChainHookInput || *c.Hooknum == *nftables.ChainHookOutput {
			out = append(out, c)
		}
	}
	return out, nil
}

// queueRemoval queues the deletion of every rule carrying the tag and
// returns how many.
func (f *nftFirewall) queueRemoval(chains []*nftables.Chain) (int, error) {
	n := 0
	for _, c := range chains {
		rules, err := f.conn.GetRules(c.Table, c)
		if err != nil {
			return n, fmt.Errorf("list rules of %s %s: %w", c.Table.Name, c.Name, err)
		}
		for _, r := range rules {
			if bytes.Equal(r.UserData, f.tag) {
				if err := f.conn.DelRule(r); err != nil {
					return n, err
				}
				n++
			}
		}
	}
	return n, nil
}

// install replaces any tagged rules left by an earlier run (a crash) with
// a fresh set, in one transaction: installing twice gives the same rules.
func (f *nftFirewall) install() error {
	chains, err := f.chains()
	if err != nil {
		return err
	}
	stale, err := f.queueRemoval(chains)
	if err != nil {
		return err
	}
	added := 0
	for _, c := range chains {
		for _, exprs := range f.rules(c) {
			f.conn.InsertRule(&nftables.Rule{Table: c.Table, Chain: c, Exprs: exprs, UserData: f.tag})
			added++
		}
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("install rules: %w", err)
	}
	f.log.Info("firewall rules installed", "backend", BackendNFTables, "interface", f.iface, "rules", added, "chains", len(chains), "stale_removed", stale)
	return nil
}

// remove deletes every rule carrying the tag.
func (f *nftFirewall) remove() error {
	chains, err := f.chains()
	if err != nil {
		return err
	}
	n, err := f.queueRemoval(chains)
	if err != nil {
		return err
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("remove rules: %w", err)
	}
	f.log.Info("firewall rules removed", "backend", BackendNFTables, "interface", f.iface, "rules", n)
	return nil
}

// rules returns the rules for chain c: at input, echo replies (and IPv6
// neighbour solicitations and advertisements) arriving on the interface;
// at output, echo requests (and the same ND messages) leaving by it.
func (f *nftFirewall) rules(c *nftables.Chain) [][]expr.Any {
	input := *c.Hooknum == *nftables.ChainHookInput
	v4 := c.Table.Family != nftables.TableFamilyIPv6
	v6 := c.Table.Family != nftables.TableFamilyIPv4
	var out [][]expr.Any
	if v4 {
		t := uint8(icmpEchoRequest)
		if input {
			t = icmpEchoReply
		}
		out = append(out, f.rule(input, unix.IPPROTO_ICMP, t))
	}
	if v6 {
		t := uint8(icmp6EchoRequest)
		if input {
			t = icmp6EchoReply
		}
		for _, t := range []uint8{t, icmp6NeighSolicit, icmp6NeighAdvert} {
			out = append(out, f.rule(input, unix.IPPROTO_ICMPV6, t))
		}
	}
	return out
}

// rule is `iifname IF meta l4proto P th type T accept` (oifname at output).
func (f *nftFirewall) rule(input bool, proto, icmpType uint8) []expr.Any {
	key := expr.MetaKeyOIFNAME
	if input {
		key = expr.MetaKeyIIFNAME
	}
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, f.iface)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{icmpType}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}
