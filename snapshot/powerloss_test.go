package snapshot

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/streamd/streamd/internal/crashfs"
)

// Power loss while Pebble opens, or rotates its MANIFEST. make stress once
// hit it (TestPowerLossSweep, seed 1796630625476906021: a crash before
// Pebble's first fsync of its directory during the first Open of an empty
// data dir, 87 % of the unsynced data kept): Pebble's MANIFEST marker
// survived, the MANIFEST it names did not, and every later Open failed
// with "pebble: could not open manifest file". Pebble makes both directory
// entries durable with one fsync, and does so at every Open, not only the
// first (manifestSyncFS). These tests cut the power at every operation,
// keep every subset of the directory entries that were not synced yet
// (the failing state is one of them), and open again.

const plDir = "/data"

// maxUnsyncedEntries bounds the directory entries a crash may leave
// undecided: the tests try every subset of them.
const maxUnsyncedEntries = 10

// crashState is one state of the disk after a power loss.
type crashState struct {
	what string
	fs   *vfs.MemFS
}

// crashCapture is the disk at a power loss, taken just before operation op
// ran: what was synced, everything, and random states between them.
type crashCapture struct {
	op           crashfs.Op
	synced, full *vfs.MemFS
	random       []crashState
}

// capture takes the disk mem at a power loss before op. It runs in a
// crashfs hook: MemFS.CrashClone holds every other operation off while it
// copies.
func capture(mem *vfs.MemFS, op crashfs.Op, randomSeeds uint64) *crashCapture {
	c := &crashCapture{op: op, synced: mem.CrashClone(vfs.CrashCloneCfg{}), full: cloneAll(mem)}
	for _, pct := range []int{13, 50, 87} {
		for seed := uint64(1); seed <= randomSeeds; seed++ {
			c.random = append(c.random, crashState{
				what: fmt.Sprintf("crash before %v, %d%% of the unsynced data kept (seed %d)", op, pct, seed),
				fs:   mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(seed, uint64(op.N)))}),
			})
		}
	}
	return c
}

// cloneAll returns a copy of mem with everything in it synced.
func cloneAll(mem *vfs.MemFS) *vfs.MemFS {
	return mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 2))})
}

// states returns the random states and one state per subset of the
// unsynced directory entries: the entries of the full disk that are not on
// the synced one although their parent is. Each state holds what was
// synced plus the kept entries as they were at the crash. A new
// directory's entries go with it: every new directory here has its parent
// synced at once (mkdirAllSynced, Pebble's mkdirAllAndSyncParents), so its
// entries were never undecided while it was.
func (c *crashCapture) states(t *testing.T) []crashState {
	t.Helper()
	syncedTree, fullTree := listTree(t, c.synced), listTree(t, c.full)
	var unsynced []string
	for p := range fullTree {
		if _, ok := syncedTree[p]; !ok {
			if _, ok := syncedTree[c.synced.PathDir(p)]; ok {
				unsynced = append(unsynced, p)
			}
		}
	}
	slices.Sort(unsynced)
	if len(unsynced) > maxUnsyncedEntries {
		t.Fatalf("crash before %v leaves %d unsynced directory entries (%v); the tests try at most %d",
			c.op, len(unsynced), unsynced, maxUnsyncedEntries)
	}
	states := slices.Clone(c.random)
	for mask := 0; mask < 1<<len(unsynced); mask++ {
		fs := c.synced.CrashClone(vfs.CrashCloneCfg{})
		var kept, lost []string
		for i, p := range unsynced {
			if mask&(1<<i) == 0 {
				lost = append(lost, p)
				continue
			}
			kept = append(kept, p)
			copyTree(t, c.full, fs, p, fullTree)
		}
		states = append(states, crashState{
			what: fmt.Sprintf("crash before %v, unsynced entries kept %v, lost %v", c.op, kept, lost),
			fs:   cloneAll(fs),
		})
	}
	return states
}

// listTree returns every path on fs, with whether it is a directory.
func listTree(t *testing.T, fs vfs.FS) map[string]bool {
	t.Helper()
	tree := map[string]bool{"/": true}
	var walk func(dir string)
	walk = func(dir string) {
		names, err := fs.List(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			p := fs.PathJoin(dir, name)
			info, err := fs.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			tree[p] = info.IsDir()
			if info.IsDir() {
				walk(p)
			}
		}
	}
	walk("/")
	return tree
}

// fingerprint names the state of fs: its paths and file sizes.
func fingerprint(t *testing.T, fs vfs.FS) string {
	t.Helper()
	var b strings.Builder
	tree := listTree(t, fs)
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range tree {
			if !yield(p) {
				return
			}
		}
	}) {
		size := int64(-1)
		if !tree[p] {
			info, err := fs.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			size = info.Size()
		}
		fmt.Fprintf(&b, "%s %d\n", p, size)
	}
	return b.String()
}

// copyTree copies path (a file, or a directory with everything in it) from
// src, whose tree is srcTree, to dst.
func copyTree(t *testing.T, src, dst vfs.FS, path string, srcTree map[string]bool) {
	t.Helper()
	if !srcTree[path] {
		if err := vfs.CopyAcrossFS(src, path, dst, path); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := dst.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := range srcTree {
		if src.PathDir(p) == path && p != path {
			copyTree(t, src, dst, p, srcTree)
		}
	}
}

// quiet is a Store logger for runs whose log nobody reads.
func quiet(string, ...any) {}

// crashOpenAt runs Open(plDir) on a copy of base and cuts the power just
// before its operation k (Close included). It returns the disk at the
// crash, or nil when the run ended before operation k.
func crashOpenAt(t *testing.T, base *vfs.MemFS, k int64, randomSeeds uint64) *crashCapture {
	t.Helper()
	mem := cloneAll(base)
	var mu sync.Mutex // the hook may run on one of Pebble's goroutines
	var c *crashCapture
	cfs := crashfs.New(mem, crashfs.CrashAt(k, func(op crashfs.Op) {
		mu.Lock()
		defer mu.Unlock()
		c = capture(mem, op, randomSeeds)
	}))
	s, err := Open(plDir, Options{FS: cfs, Logger: quiet})
	if err != nil {
		t.Fatalf("Open without a fault failed: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return c
}

// checkUsable opens the store on the state st, commits a checkpoint, cuts
// the power once more (keeping only what was synced), and checks that the
// checkpoint is there.
func checkUsable(t *testing.T, st crashState) {
	t.Helper()
	s, err := Open(plDir, Options{FS: st.fs, Logger: quiet})
	if err != nil {
		t.Errorf("%s: the next Open failed: %v", st.what, err)
		return
	}
	commit(t, s, "job", 1)
	after := st.fs.CrashClone(vfs.CrashCloneCfg{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(plDir, Options{FS: after, Logger: quiet})
	if err != nil {
		t.Errorf("%s: Open after a checkpoint and another power loss failed: %v", st.what, err)
		return
	}
	defer s.Close()
	if m, err := s.Latest("job"); err != nil || m == nil || m.CheckpointID != 1 {
		t.Errorf("%s: after a checkpoint and another power loss, Latest = %v, %v; want checkpoint 1", st.what, m, err)
	}
}

// TestPowerLossDuringFirstOpen cuts the power at every operation of the
// first Open (and Close) of an empty data dir: whatever survives, the next
// Open succeeds, and the store then keeps a checkpoint through another
// power loss.
func TestPowerLossDuringFirstOpen(t *testing.T) {
	empty := vfs.NewCrashableMem()
	n := 0
	k := int64(1)
	for ; ; k++ {
		c := crashOpenAt(t, empty, k, 3)
		if c == nil {
			break
		}
		for _, st := range c.states(t) {
			checkUsable(t, st)
			n++
		}
		if t.Failed() {
			t.Fatalf("stopping at operation %d", k)
		}
	}
	t.Logf("%d operations in a first Open and Close; %d states after a power loss reopened", k-1, n)
}

// TestPowerLossDuringFirstOpenTwice cuts the power during the first Open,
// then at every operation of the Open that follows (which finds what the
// first one left), and opens a third time.
func TestPowerLossDuringFirstOpenTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("opens the store thousands of times")
	}
	empty := vfs.NewCrashableMem()
	seen := map[string]bool{}
	var bases []crashState
	for k1 := int64(1); ; k1++ {
		c := crashOpenAt(t, empty, k1, 0)
		if c == nil {
			break
		}
		for _, st := range c.states(t) {
			if f := fingerprint(t, st.fs); !seen[f] {
				seen[f] = true
				bases = append(bases, st)
			}
		}
	}
	n := 0
	for _, base := range bases {
		for k2 := int64(1); ; k2++ {
			c := crashOpenAt(t, base.fs, k2, 0)
			if c == nil {
				break
			}
			for _, st := range c.states(t) {
				s, err := Open(plDir, Options{FS: st.fs, Logger: quiet})
				if err != nil {
					t.Errorf("%s; then %s: the third Open failed: %v", base.what, st.what, err)
					continue
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				n++
			}
			if t.Failed() {
				t.FailNow()
			}
		}
	}
	t.Logf("%d distinct states after a cut first Open; %d states after a second cut reopened", len(bases), n)
}

// storeWithCheckpoint returns a disk whose data dir holds checkpoint 1 of
// job "job" (a key group range written through a batch, another through
// an sstable ingestion), closed cleanly, and the view it was written from.
func storeWithCheckpoint(t *testing.T, opts Options) (*vfs.MemFS, *memView) {
	t.Helper()
	mem := vfs.NewCrashableMem()
	opts.FS = mem
	s, _ := openStoreIn(t, plDir, opts)
	v := newMemView("a", "b")
	v.counters(0, 8, 40)
	h1 := mustWrite(t, s, "job", 1, "batch", 0, 8, v, nil)
	s.ingestThresholdBytes = 0
	h2 := mustWrite(t, s, "job", 1, "ingest", 0, 8, v, nil)
	commitHandles(t, s, 1, h1, h2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return mem, v
}

// commitHandles commits checkpoint id of job "job" with one task per
// handle, each covering key groups [0, 8).
func commitHandles(t *testing.T, s *Store, id uint64, handles ...*KeyedHandle) {
	t.Helper()
	m := &Metadata{Job: "job", CheckpointID: id, MaxParallelism: 8}
	for _, h := range handles {
		m.Tasks = append(m.Tasks, TaskMeta{Vertex: h.Scope, Parallelism: 1, KeyGroupEnd: 8, Keyed: h})
	}
	if err := s.CommitCheckpoint(m); err != nil {
		t.Fatalf("CommitCheckpoint(%d): %v", id, err)
	}
}

// checkHolds opens the store on st and checks that checkpoint want (or a
// newer one) of job "job" is the latest and reads back as v.
func checkHolds(t *testing.T, st crashState, want uint64, v *memView) {
	t.Helper()
	s, err := Open(plDir, Options{FS: st.fs, Logger: quiet})
	if err != nil {
		t.Errorf("%s: Open of a store with completed checkpoint %d failed: %v", st.what, want, err)
		return
	}
	defer s.Close()
	m, err := s.Latest("job")
	if err != nil || m == nil || m.CheckpointID < want {
		t.Errorf("%s: Latest = %v, %v; want checkpoint %d or newer", st.what, m, err, want)
		return
	}
	for _, task := range m.Tasks {
		if got := readAll(t, s, "job", task.Keyed, 0, 8); got != v.want(0, 8) {
			t.Errorf("%s: checkpoint %d, %s: entries differ", st.what, m.CheckpointID, task.Vertex)
		}
	}
}

// TestPowerLossDuringReopen cuts the power at every operation of an Open
// (and Close) of a data dir that holds a completed checkpoint: Pebble
// writes a new MANIFEST at every Open, so this is where a restart after a
// power loss is most exposed. The checkpoint must survive every state, and
// the store must open.
func TestPowerLossDuringReopen(t *testing.T) {
	base, v := storeWithCheckpoint(t, Options{})
	n := 0
	k := int64(1)
	for ; ; k++ {
		c := crashOpenAt(t, base, k, 3)
		if c == nil {
			break
		}
		for _, st := range c.states(t) {
			checkHolds(t, st, 1, v)
			n++
		}
		if t.Failed() {
			t.Fatalf("stopping at operation %d", k)
		}
	}
	t.Logf("%d operations in an Open and Close; %d states after a power loss reopened with their checkpoint", k-1, n)
}

// TestPowerLossDuringManifestRotation commits checkpoints with a MANIFEST
// so small that Pebble writes a new one again and again, and cuts the
// power at every operation: every checkpoint whose CommitCheckpoint
// returned before the cut is there after it.
func TestPowerLossDuringManifestRotation(t *testing.T) {
	const checkpoints = 10
	opts := Options{PebbleOptions: func(po *pebble.Options) { po.MaxManifestFileSize = 1 }}
	base, v := storeWithCheckpoint(t, opts)
	run := func(k int64) (c *crashCapture, durable uint64, markers int) {
		mem := cloneAll(base)
		var committed atomic.Uint64
		var mu sync.Mutex // the hook runs on Pebble's goroutines too
		cfs := crashfs.New(mem, func(op crashfs.Op) error {
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(mem.PathBase(op.Path), manifestMarkerPrefix) && op.Kind == crashfs.Create {
				markers++
			}
			if op.N == k {
				durable = committed.Load()
				c = capture(mem, op, 1)
			}
			return nil
		})
		o := opts
		o.FS, o.Logger = cfs, quiet
		committed.Store(1)
		s, err := Open(plDir, o)
		if err != nil {
			t.Fatalf("Open without a fault failed: %v", err)
		}
		var prev [2]*KeyedHandle
		for id := uint64(2); id < 2+checkpoints; id++ {
			s.ingestThresholdBytes = int(id%2) << 30 // alternate batch and ingestion
			h1 := mustWrite(t, s, "job", id, "batch", 0, 8, v, prev[0])
			v.versions[int(id)%8]++ // one key group changes, so a block is written
			h2 := mustWrite(t, s, "job", id, "ingest", 0, 8, v, prev[1])
			commitHandles(t, s, id, h1, h2)
			committed.Store(id)
			if err := s.Retain("job", 2); err != nil {
				t.Fatal(err)
			}
			prev = [2]*KeyedHandle{h1, h2}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return c, durable, markers
	}
	_, _, markers := run(-1)
	if markers < 4 {
		t.Fatalf("Pebble created %d MANIFEST markers in a run; the test needs it to rotate its MANIFEST several times", markers)
	}
	n := 0
	k := int64(1)
	for ; ; k++ {
		c, durable, _ := run(k)
		if c == nil {
			break
		}
		for _, st := range c.states(t) {
			checkHolds(t, st, durable, v)
			n++
		}
		if t.Failed() {
			t.Fatalf("stopping at operation %d", k)
		}
	}
	t.Logf("%d MANIFEST markers and %d operations in a run; %d states after a power loss reopened with their checkpoints", markers, k-1, n)
}

// TestDamagedStoreIsRefusedNotRecreated: a store that holds a completed
// checkpoint and whose current MANIFEST is lost or damaged — the state a
// cut Open used to leave, but here not provably empty — is refused with
// an error naming the data dir, and left as it is: with the MANIFEST
// restored the checkpoint is back. Starting it over would restart the job
// into output that is already committed (DESIGN.md, durability rule 3).
func TestDamagedStoreIsRefusedNotRecreated(t *testing.T) {
	f := func(name string, damage func(fs vfs.FS, manifest string) error) {
		t.Run(name, func(t *testing.T) {
			mem, v := storeWithCheckpoint(t, Options{})
			pdir := mem.PathJoin(plDir, pebbleDirName)
			names, err := mem.List(pdir)
			if err != nil {
				t.Fatal(err)
			}
			// The current MANIFEST is the one the newest marker names
			// (older ones may still be there).
			var marker string
			for _, n := range names {
				if strings.HasPrefix(n, manifestMarkerPrefix) && n > marker {
					marker = n
				}
			}
			_, current, _ := strings.Cut(strings.TrimPrefix(marker, manifestMarkerPrefix), ".")
			if !strings.HasPrefix(current, "MANIFEST-") || !slices.Contains(names, current) {
				t.Fatalf("no current MANIFEST in %v", names)
			}
			manifest := mem.PathJoin(pdir, current)
			saved := mem.PathJoin(plDir, "saved-manifest")
			if err := vfs.Copy(mem, manifest, saved); err != nil {
				t.Fatal(err)
			}
			before := listTree(t, mem)
			if err := damage(mem, manifest); err != nil {
				t.Fatal(err)
			}

			_, err = Open(plDir, Options{FS: mem, Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), "cannot open Pebble in data dir "+plDir) {
				t.Fatalf("Open of a store with a completed checkpoint and a damaged MANIFEST = %v; want an error naming %s", err, plDir)
			}
			after := listTree(t, mem)
			for p := range before {
				if _, ok := after[p]; !ok && p != manifest {
					t.Errorf("the refused Open removed %s", p)
				}
			}

			_ = mem.Remove(manifest)
			if err := vfs.Copy(mem, saved, manifest); err != nil {
				t.Fatal(err)
			}
			checkHolds(t, crashState{what: "MANIFEST restored", fs: mem}, 1, v)
		})
	}
	f("lost", func(fs vfs.FS, manifest string) error { return fs.Remove(manifest) })
	f("truncated", func(fs vfs.FS, manifest string) error { return truncateFile(fs, manifest, 7) })
	f("empty", func(fs vfs.FS, manifest string) error { return truncateFile(fs, manifest, 0) })
}

// truncateFile cuts path on fs to its first n bytes.
func truncateFile(fs vfs.FS, path string, n int) error {
	src, err := fs.Open(path)
	if err != nil {
		return err
	}
	buf := make([]byte, n)
	_, err = src.ReadAt(buf, 0)
	src.Close()
	if err != nil {
		return err
	}
	if err := fs.Remove(path); err != nil {
		return err
	}
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf); err != nil {
		return errors.Join(err, f.Close())
	}
	return errors.Join(f.Sync(), f.Close())
}

// TestManifestSyncFS: a MANIFEST marker is created only after its
// directory was fsynced, other files without one; a failed fsync fails
// that marker's creation and every later one, and is never retried.
func TestManifestSyncFS(t *testing.T) {
	var ops []string
	var failSync atomic.Bool
	cfs := crashfs.New(vfs.NewCrashableMem(), func(op crashfs.Op) error {
		ops = append(ops, fmt.Sprintf("%s %s", op.Kind, op.Path))
		if failSync.Load() && op.Kind == crashfs.SyncDir {
			return &crashfs.InjectedError{Op: op, Err: syscall.EIO}
		}
		return nil
	})
	fs := newManifestSyncFS(cfs)
	create := func(name string) error {
		f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
		if err == nil {
			err = f.Close()
		}
		return err
	}
	if err := fs.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/d/MANIFEST-000001", "/d/marker.manifest.000001.MANIFEST-000001", "/d/000002.log"} {
		if err := create(name); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"mkdir-all /d", "create /d/MANIFEST-000001", "sync-dir /d",
		"create /d/marker.manifest.000001.MANIFEST-000001", "create /d/000002.log"}
	if !slices.Equal(ops, want) {
		t.Fatalf("operations:\n  %s\nwant:\n  %s", strings.Join(ops, "\n  "), strings.Join(want, "\n  "))
	}

	failSync.Store(true)
	ops = nil
	for i := range 2 {
		err := create(fmt.Sprintf("/d/marker.manifest.%06d.MANIFEST-000009", i+2))
		if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "cannot fsync /d before recording its new MANIFEST") {
			t.Fatalf("marker creation %d after a failed fsync = %v; want the fsync's error", i, err)
		}
	}
	if want := []string{"sync-dir /d"}; !slices.Equal(ops, want) {
		t.Fatalf("operations after the fsync failed: %v; want one fsync and no marker: %v", ops, want)
	}
	if v := cfs.Violations(); len(v) > 0 {
		t.Fatalf("a failed fsync was retried: %v", v)
	}
	if fs.Unwrap() != vfs.FS(cfs) {
		t.Fatal("Unwrap does not return the wrapped FS")
	}
}

// TestOpenFailsWhenFlushManifestFails: when the MANIFEST write of the
// flush that Open makes of the replayed WAL fails — its fsync, or the
// fsync of the directory before its marker (manifestSyncFS) — Open fails,
// without hanging, with an error that names the data dir and the fault,
// and the next process (the disk working again) finds the checkpoint. The
// flush runs on Pebble's flush goroutine, which Pebble's Fatalf ends while
// Open waits for it: Open gives up on Pebble after failedCloseTimeout and
// leaves the data dir locked (openPebbleWatched). Before, it hung.
func TestOpenFailsWhenFlushManifestFails(t *testing.T) {
	f := func(name, want string, match func(prev, op crashfs.Op) bool) {
		t.Run(name, func(t *testing.T) {
			mem, v := storeWithCheckpoint(t, Options{})
			var mu sync.Mutex
			var prev crashfs.Op
			cfs := crashfs.New(mem, crashfs.FailWhile(func(op crashfs.Op) bool {
				mu.Lock()
				defer mu.Unlock()
				fail := match(prev, op)
				prev = op
				return fail
			}, syscall.EIO))
			var err error
			logs := &logBuffer{}
			withTimeout(t, "Open", func() { _, err = Open(plDir, Options{FS: cfs, Logger: logs.logf}) })
			if err == nil || !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrStoreFailed) ||
				!strings.Contains(err.Error(), "cannot open Pebble in data dir "+plDir) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Open = %v; want ErrStoreFailed naming %s and %q", err, plDir, want)
			}
			if !strings.Contains(logs.String(), "Pebble's Open did not return") {
				t.Errorf("Open gave up on Pebble without a warning; log:\n%s", logs)
			}
			if v := cfs.Violations(); len(v) > 0 {
				t.Fatalf("a failed fsync was retried: %v", v)
			}
			checkHolds(t, crashState{what: "after the failed Open", fs: cloneAll(mem)}, 1, v)
		})
	}
	isManifest := func(op crashfs.Op) bool { return strings.HasPrefix(vfs.Default.PathBase(op.Path), "MANIFEST-") }
	f("manifest-fsync", "MANIFEST sync failed", func(_, op crashfs.Op) bool {
		return op.Kind == crashfs.Sync && isManifest(op)
	})
	f("fsync-before-marker", "before recording its new MANIFEST", func(prev, op crashfs.Op) bool {
		return op.Kind == crashfs.SyncDir && prev.Kind == crashfs.Sync && isManifest(prev)
	})
}

// TestPowerLossWithDeltaChains cuts the power at every operation of a run
// that writes checkpoints with delta chains — through batches and
// ingested sstables, with retention deleting old checkpoints whose bases
// and deltas newer ones still reference, and chains that materialize —
// and checks every state the disk may be left in: the store opens, and
// recovery restores exactly the state of a completed checkpoint, at least
// as new as the newest whose CommitCheckpoint returned before the cut.
func TestPowerLossWithDeltaChains(t *testing.T) {
	const checkpoints, kgs, keys = 7, 4, 100
	opts := Options{BlockSizeBytes: MinBlockSizeBytes, Incremental: exactPolicy(IncrementalOptions{MaxChain: 3})}
	var renders map[uint64]string // the state of each checkpoint: the same in every run
	run := func(k int64) (c *crashCapture, durable uint64, ops int64, deltas int) {
		mem := vfs.NewCrashableMem()
		var committed atomic.Uint64
		var mu sync.Mutex // the hook runs on Pebble's goroutines too
		cfs := crashfs.New(mem, func(op crashfs.Op) error {
			if op.N == k {
				mu.Lock()
				defer mu.Unlock()
				durable = committed.Load()
				c = capture(mem, op, 1)
			}
			return nil
		})
		o := opts
		o.FS, o.Logger = cfs, quiet
		s, err := Open(plDir, o)
		if err != nil {
			t.Fatalf("Open without a fault failed: %v", err)
		}
		m := newDeltaModel(1, "a", "b")
		m.fill(0, kgs, keys)
		rng := rand.New(rand.NewPCG(7, 7))
		got := map[uint64]string{}
		var prev *KeyedHandle
		for id := uint64(1); id <= checkpoints; id++ {
			if id > 1 {
				m.churn(rng, 0, kgs, keys, 12)
			}
			s.ingestThresholdBytes = int(id%2) << 30 // alternate batch and ingestion
			h := mustWrite(t, s, "job", id, "agg", 0, kgs, m, prev)
			deltas += h.DeltaKeyGroups
			commitHandles(t, s, id, h)
			got[id] = m.render(0, kgs)
			committed.Store(id)
			if err := s.Retain("job", 2); err != nil {
				t.Fatal(err)
			}
			prev = h
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		renders = got
		mu.Lock()
		defer mu.Unlock()
		return c, durable, cfs.Ops(), deltas
	}
	_, _, total, deltas := run(-1)
	if deltas < kgs*(checkpoints-1)/2 {
		t.Fatalf("a run writes %d key groups as deltas; the test needs chains", deltas)
	}
	stride := int64(1)
	if testing.Short() {
		stride = 3
	}
	n := 0
	for k := int64(1); k <= total; k += stride {
		c, durable, _, _ := run(k)
		if c == nil {
			t.Fatalf("the run did not reach operation %d of %d", k, total)
		}
		states := append([]crashState{{what: fmt.Sprintf("crash before %v, only the synced data kept", c.op), fs: c.synced}}, c.random...)
		for _, st := range states {
			s, err := Open(plDir, Options{FS: st.fs, Logger: quiet})
			if err != nil {
				t.Errorf("%s: Open failed: %v", st.what, err)
				continue
			}
			var restored string
			m, err := s.Recover("job", func(m *Metadata) error {
				var err error
				restored, err = tryReadState(s, "job", m.Tasks[0].Keyed, 0, kgs)
				return err
			})
			switch {
			case err != nil:
				t.Errorf("%s: Recover = %v", st.what, err)
			case m == nil && durable > 0, m != nil && m.CheckpointID < durable:
				t.Errorf("%s: Recover = %v; checkpoint %d had completed", st.what, m, durable)
			case m != nil && restored != renders[m.CheckpointID]:
				t.Errorf("%s: checkpoint %d restores another state than it had", st.what, m.CheckpointID)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if t.Failed() {
			t.Fatalf("stopping at operation %d", k)
		}
	}
	t.Logf("%d operations in a run with %d delta key groups; %d states after a power loss recovered", total, deltas, n)
}
