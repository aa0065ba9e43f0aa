package ipfix_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugintest"
)

// OnEvent reports a session and a template once, not on every message.
func TestOnEvent(t *testing.T) {
	b := flow.NewBatch(4)
	plugintest.Record(b, "192.0.2.1", "192.0.2.2", 17, 1, 53, 1, 100)
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: 7, TemplateRefresh: time.Nanosecond})
	var msgs [][]byte
	for range 3 {
		if err := enc.Encode(b.Records, time.Now(), func(m []byte) error {
			msgs = append(msgs, append([]byte(nil), m...))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
	var events []ipfix.Event
	dec.OnEvent(func(e ipfix.Event) { events = append(events, e) })
	from := netip.MustParseAddrPort("192.0.2.9:4739")
	out := flow.NewBatch(16)
	for _, m := range msgs {
		if _, err := dec.Decode(out, m, from); err != nil {
			t.Fatal(err)
		}
	}
	if len(events) != 2 || events[0].Kind != "session" || events[1].Kind != "template" ||
		events[0].Domain != 7 || events[1].Exporter != from || events[1].TemplateID < 256 {
		t.Errorf("events %+v, want one session (domain 7) and one template from %v", events, from)
	}
}
