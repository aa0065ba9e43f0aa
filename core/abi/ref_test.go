package abi

import (
	"net/netip"

	"github.com/weir-flow/weir/core/flow"
)

// refApply is the test oracle for Apply on ABI answers: DecodeAnswer, then
// each update through the flow.Record setters in the documented order,
// then the verdicts. It is slow and obvious.
func refApply(b *flow.Batch, buf []byte) (int, error) {
	var a Answer
	if err := DecodeAnswer(buf, &a); err != nil {
		return 0, err
	}
	if a.Status != StatusOK {
		return 0, &PluginError{Status: a.Status, Message: a.Message}
	}
	if a.Count != b.Len() {
		return 0, malformed("answer covers %d records, the batch has %d", a.Count, b.Len())
	}
	r := NewUpdateReader(a.Updates)
	var u Update
	for {
		ok, err := r.Next(&u)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		rec := b.Records[u.Record]
		k := flow.IEKey{Enterprise: u.Enterprise, Element: u.Element}
		switch u.Op {
		case OpSetUint:
			rec.SetUint(u.Field, u.Uint)
		case OpSetString:
			rec.SetString(u.Field, string(u.Bytes))
		case OpSetAddr:
			var a netip.Addr
			if len(u.Bytes) > 0 {
				a, _ = netip.AddrFromSlice(u.Bytes)
			}
			rec.SetAddr(u.Field, a)
		case OpClear:
			rec.Clear(u.Field)
		case OpSetExtra:
			if f := rec.FindExtra(k); f != nil {
				f.Value, f.Variable = b.CopyBytes(u.Bytes), u.Variable
				continue
			}
			rec.Extra = append(rec.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element, Variable: u.Variable, Value: b.CopyBytes(u.Bytes)})
		case OpAddExtra:
			rec.Extra = append(rec.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element, Variable: u.Variable, Value: b.CopyBytes(u.Bytes)})
		case OpDeleteExtra:
			kept := rec.Extra[:0]
			for _, f := range rec.Extra {
				if f.Key() != k {
					kept = append(kept, f)
				}
			}
			rec.Extra = kept
		}
	}
	return b.RetainMask(a.Verdicts), nil
}

// applyList applies u to every record of b (all kept) through Apply.
func applyList(b *flow.Batch, u *Updates) error {
	a := Answer{Count: b.Len(), Verdicts: Verdicts(nil).KeepAll(b.Len()), Updates: u.Bytes(), UpdateCount: u.Len()}
	var sc Scratch
	_, err := Apply(b, a.Append(nil), &sc)
	return err
}
