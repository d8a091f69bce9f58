package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Disk full on a real filesystem (issue 15, item 4): a tmpfs of a fixed
// size holds the data dir, the output is elsewhere. These tests need root
// and tmpfs; elsewhere they skip, saying so (the filesystem seam's ENOSPC
// tests in snapshot/ and jobrun/ run everywhere).

// mountTmpfs mounts a tmpfs of size (e.g. "8m") on a new directory and
// unmounts it when the test ends, or skips the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds streamd and mounts a tmpfs")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the disk-full test needs root to mount a tmpfs (the ENOSPC tests through the filesystem seam ran instead)")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs (%v: %s); the ENOSPC tests through the filesystem seam ran instead", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes path until the filesystem has at most leave bytes free.
func fill(t *testing.T, path string, leave int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		if free <= leave {
			return
		}
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// TestDiskFullTmpfs runs a job whose data dir is on a 512 MiB tmpfs (Pebble preallocates 70 MiB per WAL file, and keeps a recycled one), fills
// that filesystem while it runs, and frees it again: the checkpoints of
// that time are declined ("the disk is full"), the process lives on, and
// once space returns checkpoints complete and the job finishes with its
// output exactly once.
func TestDiskFullTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, "512m")
	bin := buildStreamd(t)
	dir := t.TempDir()
	const count, keys = 300000, 1000
	spec := `name: diskfull
parallelism: 2
checkpointing: {interval: 30ms, tolerable_failures: 100000}
source: {type: sequence, count: 300000, keys: 1000, rate: 100000}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: out/}
`
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--data-dir", filepath.Join(mnt, "data"), "--stats", "stats.json", "job.yaml")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	time.Sleep(700 * time.Millisecond)
	filler := filepath.Join(mnt, "filler")
	// Nearly full: less free space than the store's headroom (64 MiB), so
	// checkpoints are declined before they write, while small writes
	// already under way still fit.
	fill(t, filler, 4<<20)
	time.Sleep(time.Second)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("streamd failed while the disk was full (it should decline checkpoints and go on): %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("streamd hung:\n%s", stderr.String())
	}
	log := stderr.String()
	if strings.Contains(log, "panic") {
		t.Fatalf("streamd panicked:\n%s", log)
	}
	if !strings.Contains(log, "the disk is full") {
		t.Errorf("no checkpoint was declined for a full disk:\n%s", log)
	}
	var stats statsFile
	b, err := os.ReadFile(filepath.Join(dir, "stats.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &stats); err != nil {
		t.Fatal(err)
	}
	var declined, completedAfter int
	for _, s := range stats.Checkpoints {
		switch {
		case s.Status != "completed" && strings.Contains(s.Reason, "the disk is full"):
			declined++
		case s.Status == "completed" && declined > 0:
			completedAfter++
		}
	}
	if declined == 0 || completedAfter == 0 {
		t.Errorf("%d checkpoints declined for a full disk, %d completed after; want at least one of each", declined, completedAfter)
	}
	t.Logf("%d checkpoints declined while the disk was full, %d completed after", declined, completedAfter)
	verifyExactlyOnce(t, readOutput(t, filepath.Join(dir, "out")), count, keys)
}

// TestStartOnFullDiskExits1: a run whose data dir is on a full filesystem
// exits 1 promptly, saying the disk is full, and writes no output.
func TestStartOnFullDiskExits1(t *testing.T) {
	mnt := mountTmpfs(t, "8m")
	bin := buildStreamd(t)
	dir := t.TempDir()
	spec := `name: fullstart
checkpointing: {interval: 30ms}
source: {type: sequence, count: 1000, keys: 10}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: out/}
`
	if err := os.WriteFile(filepath.Join(dir, "job.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(mnt, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	fill(t, filepath.Join(mnt, "filler"), 0)
	start := time.Now()
	cmd := exec.Command(bin, "run", "--data-dir", data, "job.yaml")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitFailure {
			t.Fatalf("streamd on a full disk: %v, want exit 1:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("streamd on a full disk did not exit within 20 s (spinning in Pebble's Open?):\n%s", stderr.String())
	}
	log := stderr.String()
	for _, want := range []string{"the disk is full", data} {
		if !strings.Contains(log, want) {
			t.Errorf("the message does not say %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "panic") {
		t.Errorf("streamd panicked:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		if names := listDir(t, filepath.Join(dir, "out")); len(names) > 0 {
			t.Errorf("a run refused for a full disk wrote output: %v", names)
		}
	}
	t.Logf("exit 1 after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(log))
}
