//go:build !linux

package icmpprobe

import (
	"errors"
	"net/netip"
	"time"
)

type conn struct {
	raw, v6 bool
	kind    string
}

func listen(string, bool) (*conn, error) {
	return nil, errors.New("source.icmpprobe runs on Linux only")
}
func (*conn) Close() error                    { return nil }
func (*conn) SetReadDeadline(time.Time) error { return nil }
func (*conn) read(b, oob []byte) (int, netip.Addr, time.Time, error) {
	return 0, netip.Addr{}, time.Time{}, errors.New("unsupported")
}
func (*conn) write([]byte, netip.Addr) error { return errors.New("unsupported") }
