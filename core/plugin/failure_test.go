package plugin

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestReasonOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"typed", Fail(ReasonTimeout, errors.New("slow")), ReasonTimeout},
		{"wrapped", fmt.Errorf("stage: %w", Fail(ReasonCrash, errors.New("exit 2"))), ReasonCrash},
		{"plain", errors.New("boom"), ReasonPluginError},
		{"empty reason", &Error{Err: errors.New("x")}, ReasonPluginError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ReasonOf(c.err); got != c.want {
				t.Errorf("ReasonOf(%v) = %q, want %q", c.err, got, c.want)
			}
		})
	}
	if len(Reasons) > 8 {
		t.Errorf("%d reasons; core/pipeline keeps 8 counters", len(Reasons))
	}
}

func TestLogLimiter(t *testing.T) {
	var l LogLimiter
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed uint64
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{900 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{1500 * time.Millisecond, false, 0},
		{3 * time.Second, true, 1},
	}
	for _, s := range steps {
		n, ok := l.Allow(t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("at %s: Allow = %d, %v; want %d, %v", s.at, n, ok, s.suppressed, s.ok)
		}
	}
}
