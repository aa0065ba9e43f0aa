package icmpprobe

// RuleTag is the comment every managed rule carries, followed by a space
// and the interface ("weir-icmpprobe antrea-gw0"): rules are found,
// replaced and removed by it alone, in either backend.
const RuleTag = "weir-icmpprobe"

// firewall installs and removes the probe's rules in one backend.
type firewall interface {
	// install replaces the tagged rules (left by a crash) with a fresh
	// set: installing twice gives one set.
	install() error
	// remove deletes every tagged rule of the interface.
	remove() error
	// close releases the backend's resources.
	close()
}
