package icmpprobe

import (
	"errors"
	"os"
	"syscall"
)

// ErrNoPermission is returned when neither a raw ICMP socket (CAP_NET_RAW)
// nor an unprivileged ICMP socket (net.ipv4.ping_group_range) may be
// opened.
var ErrNoPermission = errors.New("no permission to send ICMP echo requests")

func isPermission(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission)
}
