package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// memEntry is one entry of a memView.
type memEntry struct {
	state      int
	key, value []byte
}

// memView is a small in-memory View for tests.
type memView struct {
	states   []string
	versions map[int]uint64
	groups   map[int][]memEntry
	err      error // returned by ForEach for errKG
	errKG    int
}

func newMemView(states ...string) *memView {
	return &memView{states: states, versions: map[int]uint64{}, groups: map[int][]memEntry{}, errKG: -1}
}

func (v *memView) States() []string              { return v.states }
func (v *memView) KeyGroupVersion(kg int) uint64 { return v.versions[kg] }
func (v *memView) ForEach(kg int, fn func(state int, key, value []byte) error) error {
	if kg == v.errKG {
		return v.err
	}
	for _, e := range v.groups[kg] {
		if err := fn(e.state, e.key, e.value); err != nil {
			return err
		}
	}
	return nil
}

// put adds an entry and bumps the key group's version.
func (v *memView) put(kg, state int, key, value []byte) {
	v.groups[kg] = append(v.groups[kg], memEntry{state, key, value})
	v.versions[kg]++
}

// counters fills key groups [start, end) with n counter entries each:
// 8-byte keys, 8-byte values, alternating between the view's states.
func (v *memView) counters(start, end, n int) {
	for kg := start; kg < end; kg++ {
		for i := 0; i < n; i++ {
			key := binary.BigEndian.AppendUint64(nil, uint64(kg)<<32|uint64(i))
			value := binary.LittleEndian.AppendUint64(nil, uint64(i*7+kg))
			v.put(kg, i%len(v.states), key, value)
		}
	}
}

// want renders the entries of key groups [start, end) as ReadKeyed reports
// them.
func (v *memView) want(start, end int) string {
	var b strings.Builder
	for kg := start; kg < end; kg++ {
		for _, e := range v.groups[kg] {
			fmt.Fprintf(&b, "%d %s %x=%x\n", kg, v.states[e.state], e.key, e.value)
		}
	}
	return b.String()
}

// readAll renders what ReadKeyed streams.
func readAll(t testing.TB, s *Store, job string, h *KeyedHandle, start, end int) string {
	t.Helper()
	var b strings.Builder
	err := s.ReadKeyed(job, h, start, end, func(kg int, state string, key, value []byte) error {
		fmt.Fprintf(&b, "%d %s %x=%x\n", kg, state, key, value)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadKeyed: %v", err)
	}
	return b.String()
}

// logBuffer collects what a Store logs.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logBuffer) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = nil
}

// openStore opens a store in a fresh temporary dir with small blocks.
func openStore(t testing.TB, opts Options) (*Store, *logBuffer) {
	t.Helper()
	return openStoreIn(t, t.TempDir(), opts)
}

func openStoreIn(t testing.TB, dir string, opts Options) (*Store, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = logs.logf
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if !s.isClosed() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return s, logs
}

// commit writes metadata for a checkpoint made of the given keyed handles.
func commit(t testing.TB, s *Store, job string, id uint64, handles ...*KeyedHandle) *Metadata {
	t.Helper()
	m := &Metadata{Job: job, CheckpointID: id, MaxParallelism: 128, Fingerprint: "fp",
		TriggeredAtUnixNano: int64(id) * 1000, CompletedAtUnixNano: int64(id)*1000 + 5}
	for i, h := range handles {
		m.Tasks = append(m.Tasks, TaskMeta{Vertex: "v", Index: i, Parallelism: len(handles),
			KeyGroupStart: 0, KeyGroupEnd: 128, Keyed: h, Source: []byte(fmt.Sprintf("offset-%d", id))})
	}
	if err := s.CommitCheckpoint(m); err != nil {
		t.Fatalf("CommitCheckpoint(%d): %v", id, err)
	}
	return m
}

// storedKV is one key/value pair found in Pebble.
type storedKV struct{ key, value []byte }

// allKeys returns every key/value in the store whose key starts with prefix.
func allKeys(t testing.TB, s *Store, prefix string) []storedKV {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []storedKV
	for valid := it.First(); valid; valid = it.Next() {
		if bytes.HasPrefix(it.Key(), []byte(prefix)) {
			out = append(out, storedKV{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
		}
	}
	return out
}

// blockWriters returns the set of writer ids that have blocks of job, with
// the number of blocks each.
func blockWriters(t testing.TB, s *Store, job string) map[uint64]int {
	t.Helper()
	prefix := jobPrefix(nil, blockTag, job)
	out := map[uint64]int{}
	for _, kv := range allKeys(t, s, string(prefix)) {
		k, ok := parseBlockKey(kv.key, len(prefix))
		if !ok {
			t.Fatalf("bad block key %q", kv.key)
		}
		out[k.writer]++
	}
	return out
}

func mustWrite(t testing.TB, s *Store, job string, ckpt uint64, scope string, start, end int, v View, prev *KeyedHandle) *KeyedHandle {
	t.Helper()
	h, err := s.WriteKeyed(job, ckpt, scope, start, end, v, prev)
	if err != nil {
		t.Fatalf("WriteKeyed(%s, %d, %s): %v", job, ckpt, scope, err)
	}
	return h
}

type pebbleOptions = pebble.Options
