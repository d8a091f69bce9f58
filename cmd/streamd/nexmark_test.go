package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/streamd/streamd/connectors/nexmark"
)

func runNexmark(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := mainErr(append([]string{"nexmark"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestNexmarkGenerateMatchesBeam compares the command's lines with the
// Beam golden events of connectors/nexmark (bids with channel and url cut
// off, which Beam does not have).
func TestNexmarkGenerateMatchesBeam(t *testing.T) {
	f, err := os.Open("../../connectors/nexmark/testdata/beam_events.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[int64]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		num, line, _ := strings.Cut(sc.Text(), " ")
		n, _ := strconv.ParseInt(num, 10, 64)
		want[n] = line
	}
	for _, tc := range []struct{ start, events int64 }{{0, 200}, {1_000_010, 30}, {nexmark.MaxEvents - 5, 5}} {
		code, out, errOut := runNexmark("generate", "--events", strconv.FormatInt(tc.events, 10), "--start", strconv.FormatInt(tc.start, 10))
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if int64(len(lines)) != tc.events {
			t.Fatalf("--start %d --events %d: %d lines", tc.start, tc.events, len(lines))
		}
		for i, line := range lines {
			n := tc.start + int64(i)
			if j := strings.Index(line, `,"channel":`); j >= 0 && strings.HasPrefix(line, `{"kind":"bid"`) {
				line = line[:j] + "}"
			}
			if w, ok := want[n]; !ok || line != w {
				t.Fatalf("event %d:\n got %s\nwant %s", n, line, w)
			}
		}
	}
}

func TestNexmarkGenerateFlags(t *testing.T) {
	f := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, out, errOut := runNexmark(args...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", args, code, errOut, wantCode, wantErr)
		}
		if wantCode != 0 && out != "" {
			t.Errorf("%q: printed %q", args, out)
		}
	}
	f(2, "--events is required", "generate")
	f(2, "--events -1 is negative", "generate", "--events", "-1")
	f(2, "--start -1 is negative", "generate", "--events", "1", "--start", "-1")
	f(2, "start+events must be at most "+strconv.FormatInt(nexmark.MaxEvents, 10), "generate", "--events", "2", "--start", strconv.FormatInt(nexmark.MaxEvents-1, 10))
	f(2, "invalid value", "generate", "--events", "x")
	f(2, "unexpected arguments", "generate", "--events", "1", "extra")
	f(2, `unknown subcommand "bench"`, "bench")
	f(2, "usage", []string{}...)
	f(0, "", "generate", "--events", "0")
	if code, out, _ := runNexmark("generate", "--events", "0"); code != 0 || out != "" {
		t.Errorf("--events 0: exit %d, out %q", code, out)
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestNexmarkGenerateWriteErrorExits1(t *testing.T) {
	var stderr bytes.Buffer
	code := mainErr([]string{"nexmark", "generate", "--events", "100000"}, &failingWriter{after: 1 << 20}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "disk full") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
