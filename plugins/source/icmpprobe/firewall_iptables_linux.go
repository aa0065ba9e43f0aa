//go:build linux

package icmpprobe

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"golang.org/x/sys/unix"
)

// iptFirewall manages the probe's rules through the iptables and
// ip6tables commands (github.com/coreos/go-iptables): legacy x_tables, or
// iptables-nft. The rules go first in the filter table's INPUT and OUTPUT
// chains, each with the comment "weir-icmpprobe IFACE"; a chain without
// rules whose policy is ACCEPT is left alone (nothing there can drop a
// probe).
type iptFirewall struct {
	iface string
	tag   string
	ipt   [2]*iptables.IPTables // IPv4, IPv6 (nil: no ip6tables)
	netns *os.File              // the network namespace the rules belong to
	log   *slog.Logger
}

func newIPTFirewall(iface, path string, log *slog.Logger) (*iptFirewall, error) {
	f := &iptFirewall{iface: iface, tag: RuleTag + " " + iface, log: log}
	// Commands run in the namespace the firewall was made in, so Shutdown
	// cleans up where Start installed even from another thread.
	ns, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	f.netns = ns
	for i, p := range []string{path, ip6tablesPath(path)} {
		proto := iptables.ProtocolIPv4
		if i == 1 {
			proto = iptables.ProtocolIPv6
		}
		var ipt *iptables.IPTables
		var err error
		if p != "" {
			ipt, err = iptables.New(iptables.IPFamily(proto), iptables.Timeout(5), iptables.Path(p))
		} else {
			ipt, err = iptables.New(iptables.IPFamily(proto), iptables.Timeout(5))
		}
		if err != nil {
			if i == 1 {
				log.Warn("no ip6tables command: IPv6 rules are not installed", "err", err)
				continue
			}
			ns.Close()
			return nil, fmt.Errorf("iptables command %q: %w", p, err)
		}
		f.ipt[i] = ipt
	}
	return f, nil
}

func (f *iptFirewall) close() { _ = f.netns.Close() }

// rules returns the rule specifications of chain INPUT or OUTPUT for
// family v6, in the order they take at the top of the chain.
func (f *iptFirewall) rules(v6, input bool) [][]string {
	dir := "-o"
	if input {
		dir = "-i"
	}
	base := []string{dir, f.iface}
	comment := []string{"-m", "comment", "--comment", f.tag, "-j", "ACCEPT"}
	mk := func(proto, typeFlag, typ string) []string {
		r := append(append([]string{}, base...), "-p", proto, "-m", proto, typeFlag, typ)
		return append(r, comment...)
	}
	if !v6 {
		t := "echo-request"
		if input {
			t = "echo-reply"
		}
		return [][]string{mk("icmp", "--icmp-type", t)}
	}
	t := "echo-request"
	if input {
		t = "echo-reply"
	}
	var out [][]string
	for _, t := range []string{t, "neighbour-solicitation", "neighbour-advertisement"} {
		out = append(out, mk("ipv6-icmp", "--icmpv6-type", t))
	}
	return out
}

// inNetns runs fn on a thread in the firewall's network namespace (the
// iptables commands fn starts inherit it).
func (f *iptFirewall) inNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("open network namespace: %w", err)
			return // the locked thread ends with the goroutine
		}
		defer orig.Close()
		if err := unix.Setns(int(f.netns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// removeTagged deletes the tagged rules of the filter table's INPUT and
// OUTPUT chains, by rule number from the last, and returns how many.
func (f *iptFirewall) removeTagged() (int, error) {
	n := 0
	mark := `--comment "` + f.tag + `"`
	for _, ipt := range f.ipt {
		if ipt == nil {
			continue
		}
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			rules, err := ipt.List("filter", chain)
			if err != nil {
				return n, fmt.Errorf("list %s filter %s: %w", command(ipt), chain, err)
			}
			var ids []int
			num := 0
			for _, r := range rules {
				if !strings.HasPrefix(r, "-A ") {
					continue // the policy line
				}
				num++
				if strings.Contains(r, mark) {
					ids = append(ids, num)
				}
			}
			for i := len(ids) - 1; i >= 0; i-- {
				if err := ipt.DeleteById("filter", chain, ids[i]); err != nil {
					return n, fmt.Errorf("delete %s filter %s rule %d: %w", command(ipt), chain, ids[i], err)
				}
				n++
			}
		}
	}
	return n, nil
}

// install replaces any tagged rules left by an earlier run with a fresh
// set at the top of INPUT and OUTPUT.
func (f *iptFirewall) install() error {
	return f.inNetns(func() error {
		stale, err := f.removeTagged()
		if err != nil {
			return err
		}
		added := 0
		for fam, ipt := range f.ipt {
			if ipt == nil {
				continue
			}
			for _, chain := range []string{"INPUT", "OUTPUT"} {
				if open, err := acceptsAll(ipt, chain); err != nil {
					return errors.Join(err, f.undo())
				} else if open {
					continue
				}
				rules := f.rules(fam == 1, chain == "INPUT")
				for i := len(rules) - 1; i >= 0; i-- { // each goes first
					if err := ipt.Insert("filter", chain, 1, rules[i]...); err != nil {
						return errors.Join(fmt.Errorf("insert %s filter %s rule %q: %w", command(ipt), chain, strings.Join(rules[i], " "), err), f.undo())
					}
					added++
				}
			}
		}
		f.log.Info("firewall rules installed", "backend", BackendIPTables, "interface", f.iface, "rules", added, "stale_removed", stale)
		return nil
	})
}

// acceptsAll reports whether chain has no rule and an ACCEPT policy: it
// cannot drop a probe, and inserting into it would create it (iptables-nft
// creates base chains on first use), so that the ruleset would differ after
// removal.
func acceptsAll(ipt *iptables.IPTables, chain string) (bool, error) {
	rules, err := ipt.List("filter", chain)
	if err != nil {
		return false, fmt.Errorf("list %s filter %s: %w", command(ipt), chain, err)
	}
	return len(rules) == 1 && rules[0] == "-P "+chain+" ACCEPT", nil
}

// undo removes a partial install.
func (f *iptFirewall) undo() error {
	_, err := f.removeTagged()
	return err
}

// remove deletes every tagged rule.
func (f *iptFirewall) remove() error {
	return f.inNetns(func() error {
		n, err := f.removeTagged()
		if err != nil {
			return err
		}
		f.log.Info("firewall rules removed", "backend", BackendIPTables, "interface", f.iface, "rules", n)
		return nil
	})
}

// command names ipt's command for errors.
func command(ipt *iptables.IPTables) string {
	if ipt.Proto() == iptables.ProtocolIPv6 {
		return "ip6tables"
	}
	return "iptables"
}
