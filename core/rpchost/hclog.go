package rpchost

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is hclog's Trace level in slog terms, below Debug.
const levelTrace = slog.LevelDebug - 4

// slogLogger adapts a *slog.Logger to the hclog.Logger that go-plugin logs
// through, so the plugin's own log lines (hclog JSON on its stderr, which
// go-plugin parses) and go-plugin's messages reach Weir's slog.
type slogLogger struct {
	l    *slog.Logger
	name string
	// rawInfo raises Debug to Info. go-plugin logs a plugin's non-JSON
	// stderr lines at Debug on the logger it names after the binary; those
	// lines are the plugin's own output and must be visible by default.
	rawInfo bool
	// binary is the plugin binary's base name, to recognise that logger.
	binary string
	args   []any
}

func newSlogLogger(l *slog.Logger, binary string) *slogLogger {
	return &slogLogger{l: l, binary: binary}
}

func (s *slogLogger) Log(level hclog.Level, msg string, args ...any) {
	lv := toSlog(level)
	if s.rawInfo && lv == slog.LevelDebug {
		lv = slog.LevelInfo
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, lv) {
		return
	}
	attrs := make([]any, 0, len(args)+2)
	if s.name != "" {
		attrs = append(attrs, "module", s.name)
	}
	for i := 0; i+1 < len(args); i += 2 {
		// go-plugin appends the plugin's own timestamp; slog stamps the
		// record itself.
		if k, ok := args[i].(string); ok && k == "timestamp" {
			continue
		}
		attrs = append(attrs, args[i], args[i+1])
	}
	if len(args)%2 == 1 {
		attrs = append(attrs, "extra", args[len(args)-1])
	}
	s.l.Log(ctx, lv, msg, attrs...)
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (s *slogLogger) Trace(msg string, args ...any) { s.Log(hclog.Trace, msg, args...) }
func (s *slogLogger) Debug(msg string, args ...any) { s.Log(hclog.Debug, msg, args...) }
func (s *slogLogger) Info(msg string, args ...any)  { s.Log(hclog.Info, msg, args...) }
func (s *slogLogger) Warn(msg string, args ...any)  { s.Log(hclog.Warn, msg, args...) }
func (s *slogLogger) Error(msg string, args ...any) { s.Log(hclog.Error, msg, args...) }

func (s *slogLogger) enabled(l slog.Level) bool { return s.l.Enabled(context.Background(), l) }
func (s *slogLogger) IsTrace() bool             { return s.enabled(levelTrace) }
func (s *slogLogger) IsDebug() bool             { return s.enabled(slog.LevelDebug) }
func (s *slogLogger) IsInfo() bool              { return s.enabled(slog.LevelInfo) }
func (s *slogLogger) IsWarn() bool              { return s.enabled(slog.LevelWarn) }
func (s *slogLogger) IsError() bool             { return s.enabled(slog.LevelError) }
func (s *slogLogger) ImpliedArgs() []any        { return s.args }

func (s *slogLogger) With(args ...any) hclog.Logger {
	c := *s
	c.l = s.l.With(args...)
	c.args = append(append([]any(nil), s.args...), args...)
	return &c
}

func (s *slogLogger) Name() string { return s.name }

func (s *slogLogger) Named(name string) hclog.Logger {
	c := *s
	if s.name == "" && name == s.binary {
		c.rawInfo = true
	}
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (s *slogLogger) ResetNamed(name string) hclog.Logger {
	c := *s
	c.name = name
	c.rawInfo = false
	return &c
}

// SetLevel is a no-op: the level is the slog handler's.
func (s *slogLogger) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the slog handler accepts. go-plugin
// skips parsing the plugin's stderr when it is Off, which never happens.
func (s *slogLogger) GetLevel() hclog.Level {
	switch {
	case s.IsTrace():
		return hclog.Trace
	case s.IsDebug():
		return hclog.Debug
	case s.IsInfo():
		return hclog.Info
	case s.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (s *slogLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(s.StandardWriter(opts), "", 0)
}

func (s *slogLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{log: func(line string) { s.Info(line) }}
}

// lineWriter calls log once per complete line written to it; a partial last
// line waits for its newline. It is safe for concurrent use.
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	log func(line string)
}

// maxLine bounds a buffered partial line so a plugin printing without
// newlines cannot grow the host's memory.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimRight(string(w.buf[:i]), "\r"); line != "" {
			w.log(line)
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.log(string(w.buf))
		w.buf = w.buf[:0]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

var (
	_ hclog.Logger = (*slogLogger)(nil)
	_ io.Writer    = (*lineWriter)(nil)
)
