package snapshot

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/streamd/streamd/internal/failpoint"
)

const crashChildEnv = "SNAPSHOT_TEST_CRASH_DIR"

// crashChild writes and commits checkpoints until failpoint
// "snapshot-async" kills the process between two blocks (full blocks and
// delta blocks: every checkpoint changes a few entries of every key group,
// so most key groups are written as deltas, and chains materialize).
func crashChild(dir string) {
	s, err := Open(dir, Options{Compression: CompressionS2, BlockSizeBytes: MinBlockSizeBytes,
		Incremental: IncrementalOptions{MaxChain: 4}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	first, _ := s.MaxCheckpointID("job")
	// The model starts empty, so the first checkpoint of a run writes no
	// block and completes whatever the failpoint draws: every round makes
	// progress.
	v := newDeltaModel(first<<20+1, "count", "sum")
	rng := rand.New(rand.NewPCG(first, 1))
	var prev *KeyedHandle
	for id := first + 1; id < first+200; id++ {
		s.ingestThresholdBytes = int(id%2) * (1 << 30) // alternate batch and ingest
		h, err := s.WriteKeyed("job", id, "agg", 0, 16, v, prev)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if err := s.CommitCheckpoint(&Metadata{Job: "job", CheckpointID: id, Tasks: []TaskMeta{
			{Vertex: "agg", Parallelism: 1, KeyGroupEnd: 16, Keyed: h}}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if err := s.Retain("job", 2); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		prev = h
		v.churn(rng, 0, 16, 300, 100)
	}
	os.Exit(4) // the failpoint never fired
}

// TestCrashDuringWriteKeyed kills a child process (SIGKILL, from failpoint
// "snapshot-async") while it writes checkpoints, several times over the
// same data dir, and checks after each crash that the newest completed
// checkpoint verifies, that ids stay monotonic and that strays are cleaned.
func TestCrashDuringWriteKeyed(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		if !failpoint.Enabled() {
			os.Exit(5)
		}
		crashChild(dir)
		return
	}
	if !failpoint.Compiled {
		t.Skip("needs the failpoints build: go test -tags failpoints ./snapshot/ (make test runs it)")
	}
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	lastID := uint64(0)
	chained := 0 // rounds whose recovered checkpoint has delta chains
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDuringWriteKeyed$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir,
			failpoint.EnvVar+"="+FailpointAsync+"=0.005",
			failpoint.SeedEnvVar+"="+fmt.Sprint(round+1))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want SIGKILL from the failpoint; output:\n%s", round, err, out)
		}
		if !strings.Contains(string(out), "failpoint snapshot-async hit") {
			t.Fatalf("round %d: child output:\n%s", round, out)
		}

		s, _ := openStoreIn(t, dir, Options{})
		if names, _ := os.ReadDir(filepath.Join(dir, ingestDirName)); len(names) != 0 {
			t.Errorf("round %d: Open left %d stale sstables", round, len(names))
		}
		maxID, err := s.MaxCheckpointID("job")
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Latest("job")
		if err != nil {
			t.Fatalf("round %d: Latest after a crash: %v", round, err)
		}
		if m == nil || m.CheckpointID <= lastID || maxID < m.CheckpointID {
			t.Fatalf("round %d: Latest = %v, MaxCheckpointID = %d, previous round's latest %d", round, m, maxID, lastID)
		}
		if err := s.DiscardIncomplete("job"); err != nil {
			t.Fatal(err)
		}
		for w := range blockWriters(t, s, "job") {
			if w > m.CheckpointID {
				t.Errorf("round %d: blocks of incomplete checkpoint %d survived DiscardIncomplete", round, w)
			}
		}
		if m.Tasks[0].Keyed.MaxChain > 0 {
			chained++
		}
		t.Logf("round %d: child completed checkpoint %d (longest delta chain %d), highest id seen %d",
			round, m.CheckpointID, m.Tasks[0].Keyed.MaxChain, maxID)
		lastID = maxID
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if chained == 0 {
		t.Error("no round recovered a checkpoint with delta chains: the test does not cover them")
	}
}
