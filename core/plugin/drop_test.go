package plugin_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/weir-flow/weir/core/plugin"
)

func TestDrops(t *testing.T) {
	tooLarge := plugin.Dropped(plugin.DropRecordTooLarge, 2, errors.New("65500 bytes"))
	for _, tc := range []struct {
		name    string
		err     error
		partial bool
		want    map[string]int
	}{
		{"nil", nil, false, map[string]int{}},
		{"plain error", errors.New("broken pipe"), false, map[string]int{}},
		{"one drop", tooLarge, true, map[string]int{plugin.DropRecordTooLarge: 2}},
		{"wrapped", fmt.Errorf("export: %w", tooLarge), true, map[string]int{plugin.DropRecordTooLarge: 2}},
		{"joined drops", errors.Join(tooLarge, plugin.Dropped(plugin.DropEmptyRecord, 1, nil)), true,
			map[string]int{plugin.DropRecordTooLarge: 2, plugin.DropEmptyRecord: 1}},
		{"drop and failure", errors.Join(tooLarge, plugin.Fail(plugin.ReasonTimeout, errors.New("slow"))), false,
			map[string]int{plugin.DropRecordTooLarge: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]int{}
			partial := plugin.Drops(tc.err, func(r string, n int) { got[r] += n })
			if partial != tc.partial || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Drops = %v, %v; want %v, %v", partial, got, tc.partial, tc.want)
			}
		})
	}
	if s := tooLarge.Error(); s != "2 records dropped (record_too_large): 65500 bytes" {
		t.Errorf("Error() = %q", s)
	}
}
