// Package logx holds the log plumbing that cmd/streamd and the daemon
// (server/) share: a slog handler that writes one line per event, and an
// adapter from the engine's printf-style Logger to slog.
//
// It imports only the standard library.
package logx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// checkpointRE finds the checkpoint a message is about.
var checkpointRE = regexp.MustCompile(`checkpoint (\d+)`)

// PrintfLogger adapts the engine's and jobrun's printf-style Logger to l:
// one event per call, at warn when the message reports a problem (a
// warning, a failure, something that could not be done), else info, with
// the checkpoint it names as an attribute.
func PrintfLogger(l *slog.Logger) func(format string, args ...any) {
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		level := slog.LevelInfo
		lower := strings.ToLower(msg)
		for _, w := range []string{"warning", "failed", "cannot", "declined", "disk is full", "error"} {
			if strings.Contains(lower, w) {
				level = slog.LevelWarn
				break
			}
		}
		if !l.Enabled(context.Background(), level) {
			return
		}
		var attrs []slog.Attr
		if m := checkpointRE.FindStringSubmatch(msg); m != nil {
			if id, err := strconv.ParseUint(m[1], 10, 64); err == nil {
				attrs = append(attrs, slog.Uint64("checkpoint", id))
			}
		}
		l.LogAttrs(context.Background(), level, msg, attrs...)
	}
}

// LineHandler is a slog.Handler that writes one line per event:
//
//	2026/12/07 03:37:25.123456 INFO message key=value …
//
// The message is written as it is (newlines escaped), so that it reads as
// the log lines of earlier versions did; attribute values are quoted when
// they need it.
type LineHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Leveler
	attrs []slog.Attr
	group string
}

func NewLineHandler(w io.Writer, level slog.Leveler) *LineHandler {
	return &LineHandler{mu: new(sync.Mutex), w: w, level: level}
}

func (h *LineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *LineHandler) Handle(_ context.Context, r slog.Record) error {
	var b []byte
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b = t.AppendFormat(b, "2006/01/02 15:04:05.000000")
	b = append(b, ' ')
	b = append(b, r.Level.String()...)
	b = append(b, ' ')
	b = append(b, strings.ReplaceAll(r.Message, "\n", `\n`)...)
	appendAttr := func(a slog.Attr) {
		if a.Equal(slog.Attr{}) {
			return
		}
		b = append(b, ' ')
		if h.group != "" {
			b = append(b, h.group+"."...)
		}
		b = append(b, a.Key...)
		b = append(b, '=')
		v := a.Value.Resolve().String()
		if v == "" || strings.ContainsAny(v, " \t\n\"=") {
			v = strconv.Quote(v)
		}
		b = append(b, v...)
	}
	for _, a := range h.attrs {
		appendAttr(a)
	}
	r.Attrs(func(a slog.Attr) bool { appendAttr(a); return true })
	b = append(b, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	return err
}

func (h *LineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &h2
}

func (h *LineHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	if h2.group != "" {
		name = h2.group + "." + name
	}
	h2.group = name
	return &h2
}
