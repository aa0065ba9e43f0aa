package abi

import (
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

// FuzzDecode checks that no input makes a decoder panic.
func FuzzDecode(f *testing.F) {
	f.Add(AppendBatch(nil, fullBatch(3)))
	f.Add(AppendBatchMask(nil, fullBatch(2), MaskOf(FlagExtra, flow.SourcePodName)))
	f.Add(AppendBatchMask(nil, fullBatch(3), MaskOf(FlagColumns|FlagExtra|FlagExporter, flow.SourcePodName, flow.SourceAddress, flow.FlowEnd)))
	f.Add(AppendBatchMask(nil, fullBatch(3), MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.SourceTransportPort)))
	f.Add(AppendBatchMask(nil, fullBatch(3), MaskOf(FlagColumns|FlagNoPresence, flow.ProtocolIdentifier, flow.SourcePodName)))
	f.Add((&Answer{Count: 3, Verdicts: Verdicts(nil).KeepAll(3)}).Append(nil))
	var u Updates
	u.SetString(0, flow.SourcePodName, "x")
	u.AddExtra(1, flow.Field{Enterprise: 1, Element: 2, Value: []byte("v")})
	f.Add((&Answer{Count: 3, Verdicts: Verdicts(nil).KeepAll(3), Updates: u.Bytes(), UpdateCount: u.Len()}).Append(nil))
	f.Add((&Manifest{Version: 1, Kind: KindFilter}).Append(nil))
	f.Fuzz(func(t *testing.T, buf []byte) {
		var d Decoder
		_ = d.Decode(buf, flow.NewBatch(0))
		// Twice through Parse: the second from its cache.
		for range 2 {
			if v, err := d.Parse(buf); err == nil && v.Len() < 1<<16 {
				var r flow.Record
				for i := range v.Len() {
					_ = d.Record(v, i, &r)
				}
			}
		}
		if v, err := ParseBatch(buf); err == nil && v.Len() < 1<<16 {
			var r flow.Record
			_ = d.Filter(&v, &r, func(*flow.Record) bool { return false }, Verdicts(nil).KeepAll(v.Len()))
			for f := range flow.NumFields {
				_ = d.Column(&v, flow.FieldID(f))
			}
			_ = d.PresenceColumn(&v)
		}
		var a Answer
		if DecodeAnswer(buf, &a) == nil {
			_, _ = Apply(plugintest.MixedBatch(a.Count%300), buf, new(Scratch))
		}
		_, _ = DecodeManifest(buf)
	})
}
