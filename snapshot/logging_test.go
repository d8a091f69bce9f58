package snapshot

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Library users get one logger: with no logger set, the Store logs
// through slog.Default, and Pebble's informational lines ("Found 0 WALs")
// are debug, so they do not appear at slog's default level (issue 16).
func TestDefaultLoggerHidesPebbleInfo(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	defer slog.SetDefault(old)
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if strings.Contains(buf.String(), "pebble") {
		t.Fatalf("Pebble's info lines reach the default log:\n%s", buf.String())
	}
	buf.Reset()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	s, err = Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !strings.Contains(buf.String(), "pebble") {
		t.Fatalf("at debug level Pebble's info lines are missing:\n%s", buf.String())
	}
}
