package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/streamd/streamd/job"
)

// Spec files are checked before they are read: a device, a FIFO, a
// directory or a file over the limit is refused with exit 2 and a message
// that names the file (issue 15: /dev/zero as a spec crashed the process
// out of memory).
func TestSpecInputLimits(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), job.MaxSpecBytes/2+1), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	f := func(path, want string) {
		t.Helper()
		for _, cmd := range []string{"run", "validate"} {
			var stdout, stderr bytes.Buffer
			code := mainErr([]string{cmd, path}, &stdout, &stderr)
			if code != exitUsage {
				t.Fatalf("streamd %s %s: exit %d, want %d (stderr %q)", cmd, path, code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), path) {
				t.Fatalf("streamd %s %s: stderr %q does not name the file and %q", cmd, path, stderr.String(), want)
			}
		}
	}
	f("/dev/zero", "not a regular file")
	f(fifo, "not a regular file") // opening a FIFO for reading would block forever
	f(dir, "not a regular file")
	f(big, "the limit is")
}

// Help that is asked for is not an error: exit 0, on standard output.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"run", "--help"}, {"run", "-h"}, {"validate", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := mainErr(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("streamd %v: exit %d, want 0 (stderr %q)", args, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "streamd run") {
			t.Fatalf("streamd %v: stdout %q has no usage", args, stdout.String())
		}
	}
}
