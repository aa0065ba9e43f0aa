package ipfix_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/plugin"
	source "github.com/weir-flow/weir/plugins/source/ipfix"
)

// A UDP port another socket holds is refused, whether that socket set
// SO_REUSEPORT (another Weir's readers) or not; reuse_port opts in to
// sharing; the source's own readers always share.
func TestPortOwnership(t *testing.T) {
	first, err := source.New(&source.Config{UDP: "127.0.0.1:0", Readers: 3}, plugin.NopSettings(source.ID))
	if err != nil {
		t.Fatalf("first source with 3 readers: %v", err)
	}
	t.Cleanup(func() { _ = first.Shutdown(context.Background()) })
	addr := first.UDPAddr().String()
	plain, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })

	tests := []struct {
		name    string
		cfg     source.Config
		wantErr error // nil: must succeed
	}{
		{"second weir on a port bound with SO_REUSEPORT", source.Config{UDP: addr, Readers: 2}, source.ErrPortInUse},
		{"second weir, one reader", source.Config{UDP: addr, Readers: 1}, source.ErrPortInUse},
		{"port bound without SO_REUSEPORT", source.Config{UDP: plain.LocalAddr().String(), Readers: 2}, source.ErrPortInUse},
		{"reuse_port shares with the first", source.Config{UDP: addr, Readers: 2, ReusePort: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := source.New(&tt.cfg, plugin.NopSettings(source.ID))
			if s != nil {
				defer s.Shutdown(context.Background())
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("New = %v, want %v", err, tt.wantErr)
			case tt.wantErr != nil:
				if want := fmt.Sprintf("listen udp %s", tt.cfg.UDP); !contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
