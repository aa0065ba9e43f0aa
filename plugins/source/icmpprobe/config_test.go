package icmpprobe_test

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/source/icmpprobe"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, icmpprobe.ID, nil) }

func TestExample(t *testing.T) { plugintest.CheckExample(t, icmpprobe.ExampleYAML) }

func TestReadmeConfigTable(t *testing.T) { plugintest.CheckConfigTable(t, icmpprobe.Config{}) }

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		s, err := icmpprobe.New(fastConfig("127.0.0.1", "::1"), plugin.NopSettings(icmpprobe.ID))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestLoopback(t *testing.T) {
	s, err := icmpprobe.New(fastConfig("127.0.0.1"), plugin.NopSettings(icmpprobe.ID))
	if err != nil {
		t.Fatal(err)
	}
	em := plugintest.NewEmitter(16)
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if st := s.Stats(); len(st) == 1 && st[0].Received >= 2 {
			break
		}
		sleep()
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if len(st) != 1 || st[0].Received < 2 || st[0].LastRTT <= 0 {
		t.Fatalf("stats %+v", st)
	}
	recs := em.Sink.Records()
	if len(recs) == 0 || recs[len(recs)-1].DestinationAddress.String() != "127.0.0.1" || recs[0].ProtocolIdentifier != 1 {
		t.Fatalf("records %+v", recs)
	}
}
