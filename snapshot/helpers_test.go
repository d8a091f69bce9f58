package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
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
	err := s.ReadKeyed(job, h, start, end, func(kg int, state string, key, value []byte, op uint8) error {
		deleted := op == OpDelete
		if deleted {
			fmt.Fprintf(&b, "%d %s %x deleted\n", kg, state, key)
			return nil
		}
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

// modelKey names one entry of a deltaModel's key group.
type modelKey struct {
	state int
	key   string
}

// modelChange is one logged change of a deltaModel key group: the entry
// it changed and the version it produced.
type modelChange struct {
	version uint64
	k       modelKey
}

// deltaModel is a reference DeltaView for tests: an in-memory model of a
// key-grouped map with a version per key group and a log of the changes
// behind each version. Changes reports the entries changed since a version
// from the log (ok=false for a version it never produced, or one older
// than a truncated log); ChangedEntries counts the logged changes since
// (an upper bound: repeated changes of one entry count each time).
type deltaModel struct {
	states   []string
	base     uint64 // the first version this model gives a key group
	groups   map[int]map[modelKey][]byte
	versions map[int]uint64
	log      map[int][]modelChange
	// truncated marks key groups whose log lost its start: Changes can
	// tell only from versions still in the log.
	truncated map[int]bool

	// Knobs.
	noEstimate bool // ChangedEntries says ok=false
	refuse     bool // Changes says ok=false (ChangedEntries still ok)
	pad        bool // Changes also reports an unchanged entry and the deletion of an absent one
	// changesCalls counts the calls of Changes.
	changesCalls int
}

func newDeltaModel(base uint64, states ...string) *deltaModel {
	return &deltaModel{states: states, base: base, groups: map[int]map[modelKey][]byte{},
		versions: map[int]uint64{}, log: map[int][]modelChange{}, truncated: map[int]bool{}}
}

func (m *deltaModel) bump(kg int, k modelKey) {
	if m.versions[kg] == 0 {
		m.versions[kg] = m.base
	} else {
		m.versions[kg]++
	}
	m.log[kg] = append(m.log[kg], modelChange{m.versions[kg], k})
}

// set inserts or changes an entry.
func (m *deltaModel) set(kg, state int, key string, value []byte) {
	if m.groups[kg] == nil {
		m.groups[kg] = map[modelKey][]byte{}
	}
	k := modelKey{state, key}
	m.groups[kg][k] = bytes.Clone(value)
	m.bump(kg, k)
}

// del deletes an entry (logged even if it does not exist).
func (m *deltaModel) del(kg, state int, key string) {
	k := modelKey{state, key}
	delete(m.groups[kg], k)
	m.bump(kg, k)
}

// touch changes kg's version without changing an entry.
func (m *deltaModel) touch(kg int) {
	if m.versions[kg] == 0 {
		m.versions[kg] = m.base
	} else {
		m.versions[kg]++
	}
}

// truncate forgets kg's log before its current version.
func (m *deltaModel) truncate(kg int) {
	m.log[kg] = nil
	m.truncated[kg] = true
}

// fill puts n entries into each key group of [start, end).
func (m *deltaModel) fill(start, end, n int) {
	for kg := start; kg < end; kg++ {
		for i := 0; i < n; i++ {
			m.set(kg, i%len(m.states), fmt.Sprintf("k%05d", i), fmt.Appendf(nil, "v%d-%d", kg, i))
		}
	}
}

// churn makes n random changes in key groups [start, end) among keys
// k00000…k(keys-1): every fifth a deletion, the rest new values.
func (m *deltaModel) churn(rng *rand.Rand, start, end, keys, n int) {
	for i := 0; i < n; i++ {
		kg := start + rng.IntN(end-start)
		state := rng.IntN(len(m.states))
		key := fmt.Sprintf("k%05d", rng.IntN(keys))
		if rng.IntN(5) == 0 {
			m.del(kg, state, key)
		} else {
			m.set(kg, state, key, fmt.Appendf(nil, "w%d", rng.Uint32()))
		}
	}
}

func (m *deltaModel) States() []string              { return m.states }
func (m *deltaModel) KeyGroupVersion(kg int) uint64 { return m.versions[kg] }
func (m *deltaModel) Len(kg int) int                { return len(m.groups[kg]) }

func (m *deltaModel) sortedKeys(kg int) []modelKey {
	keys := make([]modelKey, 0, len(m.groups[kg]))
	for k := range m.groups[kg] {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b modelKey) int {
		if a.state != b.state {
			return a.state - b.state
		}
		return strings.Compare(a.key, b.key)
	})
	return keys
}

func (m *deltaModel) ForEach(kg int, fn func(state int, key, value []byte) error) error {
	for _, k := range m.sortedKeys(kg) {
		if err := fn(k.state, []byte(k.key), m.groups[kg][k]); err != nil {
			return err
		}
	}
	return nil
}

// since returns the log of kg after version since, ok=false when the
// model cannot tell.
func (m *deltaModel) since(kg int, since uint64) ([]modelChange, bool) {
	if since == m.versions[kg] {
		return nil, true
	}
	log := m.log[kg]
	if since == 0 && !m.truncated[kg] {
		return log, true
	}
	for i, c := range log {
		if c.version == since {
			return log[i+1:], true
		}
	}
	return nil, false
}

func (m *deltaModel) ChangedEntries(kg int, since uint64) (int, bool) {
	if m.noEstimate {
		return 0, false
	}
	log, ok := m.since(kg, since)
	if !ok {
		return 0, false
	}
	if m.pad {
		return len(log) + 2, true
	}
	return len(log), true
}

func (m *deltaModel) Changes(kg int, since uint64, fn func(state int, key, value []byte, op uint8) error) (bool, error) {
	m.changesCalls++
	log, ok := m.since(kg, since)
	if !ok || m.refuse {
		return false, nil
	}
	seen := map[modelKey]bool{}
	var changed []modelKey
	for _, c := range log {
		if !seen[c.k] {
			seen[c.k] = true
			changed = append(changed, c.k)
		}
	}
	if m.pad {
		if err := fn(0, []byte("never-existed"), []byte("ignored"), OpDelete); err != nil {
			return true, err
		}
	}
	for _, k := range changed {
		if _, ok := m.groups[kg][k]; !ok {
			if err := fn(k.state, []byte(k.key), nil, OpDelete); err != nil {
				return true, err
			}
		}
	}
	for _, k := range changed {
		if v, ok := m.groups[kg][k]; ok {
			if err := fn(k.state, []byte(k.key), v, OpPut); err != nil {
				return true, err
			}
		}
	}
	if m.pad {
		if keys := m.sortedKeys(kg); len(keys) > 0 {
			if err := fn(keys[0].state, []byte(keys[0].key), m.groups[kg][keys[0]], OpPut); err != nil {
				return true, err
			}
		}
	}
	return true, nil
}

// render renders the entries of key groups [start, end), sorted, as
// readState does.
func (m *deltaModel) render(start, end int) string {
	var b strings.Builder
	for kg := start; kg < end; kg++ {
		keys := m.sortedKeys(kg)
		slices.SortStableFunc(keys, func(a, b modelKey) int { return strings.Compare(m.states[a.state], m.states[b.state]) })
		for _, k := range keys {
			fmt.Fprintf(&b, "%d %s %q=%q\n", kg, m.states[k.state], k.key, m.groups[kg][k])
		}
	}
	return b.String()
}

// readState restores key groups [start, end) of h through ReadKeyed into
// maps — applying each key group's base and deltas in the order they
// arrive, as a backend does — and renders them as deltaModel.render does.
func readState(t testing.TB, s *Store, job string, h *KeyedHandle, start, end int) string {
	t.Helper()
	got, err := tryReadState(s, job, h, start, end)
	if err != nil {
		t.Fatalf("ReadKeyed: %v", err)
	}
	return got
}

func tryReadState(s *Store, job string, h *KeyedHandle, start, end int) (string, error) {
	type sk struct{ state, key string }
	groups := map[int]map[sk]string{}
	err := s.ReadKeyed(job, h, start, end, func(kg int, state string, key, value []byte, op uint8) error {
		deleted := op == OpDelete
		g := groups[kg]
		if g == nil {
			g = map[sk]string{}
			groups[kg] = g
		}
		if deleted {
			if value != nil {
				return fmt.Errorf("deletion of %q with a value", key)
			}
			delete(g, sk{state, string(key)})
		} else {
			g[sk{state, string(key)}] = string(value)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for kg := start; kg < end; kg++ {
		keys := make([]sk, 0, len(groups[kg]))
		for k := range groups[kg] {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b sk) int {
			if c := strings.Compare(a.state, b.state); c != 0 {
				return c
			}
			return strings.Compare(a.key, b.key)
		})
		for _, k := range keys {
			fmt.Fprintf(&b, "%d %s %q=%q\n", kg, k.state, k.key, groups[kg][k])
		}
	}
	return b.String(), nil
}

// viewOnly hides the DeltaView methods of a View.
type viewOnly struct{ View }
