package window

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/streamd/streamd/keyed"
)

// timerService is what the operator needs of its key's event-time timers:
// engine.KeyedContext in a job, keyed.Timers directly in the unit tests.
// Timers are per key and timestamp, not per window (keyed.Timers has no
// namespaces): a timer at ts means "look at this key at ts", and what to
// do then is decided from the state (see onTimer).
type timerService interface {
	RegisterEventTimeTimer(ts int64)
	DeleteEventTimeTimer(ts int64)
}

// result is a window's result waiting to be emitted.
type result[OUT any] struct {
	w   Window
	out OUT
}

// session is a session of the current key as the scan found it; raw is
// its accumulator's bytes, valid until the next write to the backend.
type session struct {
	w   Window
	raw []byte
	hit bool // intersects the record's session
}

// operator is one task's window operator over its keyed backend: what to
// do with a record (process) and with a timer (onTimer), for the backend's
// current key. It owns no goroutine, clock or I/O: the engine (Aggregate)
// and the unit tests drive it.
//
// Every method reads and writes the state before it emits anything: an
// emitted result runs the operators chained after this one, which may
// make another key current (a keyed operator after AsKeyed). Between two
// results, emitAll makes the operator's key current again, so that the
// emit function's ctx.Key() is always the window's key.
type operator[T, ACC, OUT any] struct {
	b    *keyed.Backend
	id   keyed.StateID
	name string
	g    geometry
	mode stateMode
	agg  AggregateFunction[T, ACC, OUT]
	late *atomic.Int64

	timers timerService
	emit   func(w Window, out *OUT)

	// Scratch, reused so that a record allocates nothing. The
	// accumulators are fields rather than locals because the aggregate's
	// functions take pointers to them, which would make locals escape.
	acc, win, tmp ACC
	uk            [8]byte
	buf           []byte
	results       []result[OUT]
	key           []byte
	sessions      []session
	scan          func(uk, v []byte) bool // scanSession, built once
	dels          []int64
	panes         []paneRef
	scanPaneFn    func(uk, v []byte) bool // scanPane, built once
	scanNext      func(uk, v []byte) bool // scanNextPane, built once

	// newPaneTimer's walk: its watermark, the pane it skips and that
	// pane's next event (in), the earliest next event of the others seen
	// and whether there is one (out).
	nextWM, nextSkip, nextOf, nextMin int64
	nextFound                         bool
}

// newOperator registers the operator's accumulator state in b.
func newOperator[T, ACC, OUT any](b *keyed.Backend, name string, g geometry, mode stateMode, agg AggregateFunction[T, ACC, OUT], late *atomic.Int64) (*operator[T, ACC, OUT], error) {
	id, err := b.Register(name, keyed.KindMap, keyed.StateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot register the window state %q: %w", name, err)
	}
	o := &operator[T, ACC, OUT]{b: b, id: id, name: name, g: g, mode: mode, agg: agg, late: late}
	o.scan, o.scanPaneFn, o.scanNext = o.scanSession, o.scanPane, o.scanNextPane
	return o, nil
}

// process handles record v with timestamp ts for the current key, at
// watermark wm.
func (o *operator[T, ACC, OUT]) process(v *T, ts, wm int64) {
	if ts < MinTimestamp || ts > MaxTimestamp {
		o.dropLate()
		return
	}
	switch o.mode {
	case modePanes:
		o.processPane(v, ts, wm)
	case modeWindows:
		o.processWindows(v, ts, wm)
	default:
		o.processSession(v, ts, wm)
	}
	o.emitAll()
}

// onTimer handles the current key's timer at ts, fired by a watermark
// advance to wm >= ts. For windows with one accumulator each and for
// sessions, what fires and what is cleaned up is decided by ts alone, as
// Flink's WindowOperator.onEventTime does, so that timers firing in one
// watermark advance act as if the watermark passed them one by one. Panes
// keep one timer per key, and its firing does at once what the watermark
// passing each of the key's windows up to wm would do (see Panes).
func (o *operator[T, ACC, OUT]) onTimer(ts, wm int64) {
	switch o.mode {
	case modePanes:
		o.timerPanes(ts, wm)
	case modeWindows:
		o.timerWindows(ts)
	default:
		o.timerSessions(ts)
	}
	o.emitAll()
}

func (o *operator[T, ACC, OUT]) dropLate() {
	if o.late != nil {
		o.late.Add(1)
	}
}

// emitAll emits the results gathered by process or onTimer, in order.
func (o *operator[T, ACC, OUT]) emitAll() {
	if len(o.results) == 0 {
		return
	}
	if len(o.results) > 1 {
		o.key = append(o.key[:0], o.b.CurrentKey()...)
	}
	for i := range o.results {
		if i > 0 && !o.b.HasCurrentKey(o.key) {
			o.b.SetCurrentKey(o.key)
		}
		o.emit(o.results[i].w, &o.results[i].out)
	}
	// Drop what the results reference (an OUT may hold pointers).
	clear(o.results)
	o.results = o.results[:0]
}

// Accumulator state: a map state of the key, user key the 8-byte
// big-endian start of the pane, window or session. The value is the
// accumulator's encoding; a session's is preceded by its end (8 bytes,
// big endian).

func (o *operator[T, ACC, OUT]) userKey(start int64) []byte {
	binary.BigEndian.PutUint64(o.uk[:], uint64(start))
	return o.uk[:]
}

// get decodes the accumulator at start into *dst and reports whether there
// is one.
func (o *operator[T, ACC, OUT]) get(start int64, dst *ACC) bool {
	raw, ok := o.b.GetUser(o.id, o.userKey(start))
	if ok {
		o.decode(raw, dst)
	}
	return ok
}

func (o *operator[T, ACC, OUT]) decode(raw []byte, dst *ACC) {
	var err error
	if *dst, err = o.agg.Codec.Decode(raw); err != nil {
		panic(fmt.Errorf("%w: window state %q holds bytes its codec cannot decode: %w", keyed.ErrCorrupt, o.name, err))
	}
}

func (o *operator[T, ACC, OUT]) put(start int64, acc *ACC) {
	o.buf = o.agg.Codec.Append(o.buf[:0], *acc)
	o.b.PutUser(o.id, o.userKey(start), o.buf)
}

func (o *operator[T, ACC, OUT]) remove(start int64) { o.b.DeleteUser(o.id, o.userKey(start)) }

// addRecord folds v into the accumulator at start (creating it) and
// reports whether it existed.
func (o *operator[T, ACC, OUT]) addRecord(start int64, v *T) bool {
	existed := o.get(start, &o.acc)
	if !existed {
		o.acc = o.agg.Create()
	}
	o.agg.Add(&o.acc, v)
	o.put(start, &o.acc)
	return existed
}

// Panes (tumbling and pane-based sliding windows).
//
// A pane is [p, p+pane), pane = gcd(size, slide), aligned with the
// windows, so every window is a whole number of panes and a record is in
// exactly the windows of its pane. Per record, one accumulator (its
// pane's) is read and written. A window's result merges its panes, read
// in time order, when it fires.
//
// Timers. A key with panes has exactly one timer, at its next event: the
// earliest, over its panes, of the last millisecond of a window that holds
// the pane and has not fired, and (with lateness) of the pane's cleanup
// time (paneNext). When that timer fires, during a watermark advance to
// wm, the operator reads the key's panes once (one walk of its map
// state), fires in order every window that holds a pane and ends within
// [ts+1, wm+1], drops every pane whose cleanup time is at or below wm, and
// registers the key's next event, which is after wm. Nothing between the
// key's last event and ts can be due (ts was the earliest), so this is
// what firing the timers of each window and cleanup one by one, as the
// watermark passes them, would do, in the same order for the key; only
// the interleaving with other keys' results within one watermark differs
// (every result still precedes the watermark that passed its window).
// A record that creates a pane compares the pane's next event with the
// key's timer (the minimum over the other panes, from the same walk) and
// moves the timer only if the new pane's is earlier. So the work of a
// firing is per key and watermark, not per window: a key whose panes span
// five windows that one watermark passes costs one timer, one walk and
// the deletes, where a timer per window cost five timers and twenty-five
// pane reads.

// paneRef is a pane of the current key as the walk found it: its start,
// and its accumulator's bytes, valid until the next write to the backend.
type paneRef struct {
	start int64
	raw   []byte
}

// paneNext is pane p's next event after wm: the last millisecond of the
// first window of p that ends after wm+1, or p's cleanup time if that is
// earlier (lateness) or no such window is left. The pane exists, so its
// cleanup time is after wm, which bounds wm below 2^62+size+lateness: no
// overflow.
func (g *geometry) paneNext(p, wm int64) int64 {
	lastEnd := g.lastStart(p) + g.size
	if first := g.firstEnd(p); first-1 > wm {
		return first - 1
	}
	if e := alignUp(wm+2, g.endBase(), g.slide); e <= lastEnd {
		return e - 1
	}
	return lastEnd - 1 + g.lateness
}

// paneCleanup is the time after which no window needs pane p: the last
// millisecond of its last window, plus the lateness.
func (g *geometry) paneCleanup(p int64) int64 { return g.lastStart(p) + g.size - 1 + g.lateness }

// processPane handles a record for the panes mode.
func (o *operator[T, ACC, OUT]) processPane(v *T, ts, wm int64) {
	g := &o.g
	p := g.paneOf(ts)
	ls := g.lastStart(p)
	if p-ls >= g.size {
		// Between two windows (slide > size): in none, as in Flink (late
		// only if its timestamp is).
		if ts+g.lateness <= wm {
			o.dropLate()
		}
		return
	}
	lastEnd := ls + g.size
	if lastEnd-1+g.lateness <= wm {
		// Every window of the pane is past its cleanup time.
		o.dropLate()
		return
	}
	if !o.addRecord(p, v) {
		o.newPaneTimer(p, wm)
	}
	first := g.firstEnd(p)
	if g.lateness == 0 || first-1 > wm {
		return
	}
	// Windows of the pane that fired and are within their lateness fire
	// again now.
	lo := max(first, alignUp(wm+2-g.lateness, g.endBase(), g.slide))
	hi := min(lastEnd, alignDown(wm+1, g.endBase(), g.slide))
	// Latest window first: the order of Flink's assignWindows.
	for e := hi; e >= lo; e -= g.slide {
		if o.mergePanes(e) {
			o.results = append(o.results, result[OUT]{Window{e - g.size, e}, o.agg.Result(&o.win)})
		}
	}
}

// newPaneTimer keeps the key's one timer at its next event after pane p
// was created at watermark wm: the key's timer is the earliest next event
// of its other panes, and moves only when p's is earlier. The walk stops
// at the first other pane whose next event is no later than p's: the
// timer stays. The map state lists the newest pane first, so with records
// in order that is the second entry (the pane before p), and the walk is
// O(1) rather than O(panes).
func (o *operator[T, ACC, OUT]) newPaneTimer(p, wm int64) {
	next := o.g.paneNext(p, wm)
	o.nextWM, o.nextSkip, o.nextOf, o.nextFound = wm, p, next, false
	o.b.RangeUser(o.id, o.scanNext)
	switch {
	case !o.nextFound:
		o.timers.RegisterEventTimeTimer(next)
	case next < o.nextMin:
		o.timers.DeleteEventTimeTimer(o.nextMin)
		o.timers.RegisterEventTimeTimer(next)
	}
}

// scanNextPane is the RangeUser callback of newPaneTimer: the earliest
// next event after nextWM of the key's panes other than nextSkip, or the
// first one no later than nextOf.
func (o *operator[T, ACC, OUT]) scanNextPane(uk, _ []byte) bool {
	p := o.paneStart(uk)
	if p == o.nextSkip {
		return true
	}
	n := o.g.paneNext(p, o.nextWM)
	if !o.nextFound || n < o.nextMin {
		o.nextMin, o.nextFound = n, true
	}
	return n > o.nextOf
}

func (o *operator[T, ACC, OUT]) paneStart(uk []byte) int64 {
	if len(uk) != 8 {
		panic(fmt.Errorf("%w: window state %q holds a pane whose user key has %d bytes, want 8", keyed.ErrCorrupt, o.name, len(uk)))
	}
	return int64(binary.BigEndian.Uint64(uk))
}

// scanPane is the RangeUser callback that collects the current key's
// panes.
func (o *operator[T, ACC, OUT]) scanPane(uk, v []byte) bool {
	o.panes = append(o.panes, paneRef{start: o.paneStart(uk), raw: v})
	return true
}

// loadPanes collects the current key's panes in order of start. The map
// state lists the newest entry first and panes are mostly created in time
// order, so the list is reversed and then insertion-sorted: linear for
// the usual order, and a key has O(size/pane) panes.
func (o *operator[T, ACC, OUT]) loadPanes() {
	o.panes = o.panes[:0]
	o.b.RangeUser(o.id, o.scanPaneFn)
	ps := o.panes
	slices.Reverse(ps)
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].start < ps[j-1].start; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// mergePanes merges the panes of the window ending at e into o.win, in
// time order, reading each from the state, and reports whether the
// window has a pane. (A record within the lateness refires a few windows
// this way; a timer merges the panes it walked, in firePanes.)
func (o *operator[T, ACC, OUT]) mergePanes(e int64) (found bool) {
	g := &o.g
	for p := e - g.size; p < e; p += g.pane {
		raw, ok := o.b.GetUser(o.id, o.userKey(p))
		if !ok {
			continue
		}
		if !found {
			o.decode(raw, &o.win)
			found = true
		} else {
			o.decode(raw, &o.tmp)
			o.agg.Merge(&o.win, &o.tmp)
		}
	}
	return found
}

// timerPanes handles the key's timer at ts, at watermark wm >= ts, for
// the panes mode: every window that holds a pane and whose last
// millisecond is in [ts, wm] fires, oldest first; every pane whose
// cleanup time is at or below wm is dropped; the key's timer moves to its
// next event. The timer was the key's earliest event (see Panes), so no
// window ending before ts+1 is due: they fired at earlier watermarks.
func (o *operator[T, ACC, OUT]) timerPanes(ts, wm int64) {
	g := &o.g
	o.loadPanes()
	ps := o.panes
	if len(ps) == 0 {
		// A key without panes has no timer; one that fires anyway (kept
		// by a checkpoint of the layout that chained a timer per window)
		// has nothing left to do.
		return
	}
	// Fire. Window e holds the panes that start in [e−size, e): a sliding
	// range of ps, lo..hi−1. Windows without a pane are skipped by
	// jumping to the first window of the next pane.
	e := max(alignUp(ts+1, g.endBase(), g.slide), g.firstEnd(ps[0].start))
	lo, hi := 0, 0
	for e-1 <= wm {
		for lo < len(ps) && ps[lo].start < e-g.size {
			lo++
		}
		if lo == len(ps) {
			break
		}
		if ps[lo].start >= e {
			e = max(e+g.slide, g.firstEnd(ps[lo].start))
			continue
		}
		hi = max(hi, lo)
		for hi < len(ps) && ps[hi].start < e {
			hi++
		}
		o.decode(ps[lo].raw, &o.win)
		for i := lo + 1; i < hi; i++ {
			o.decode(ps[i].raw, &o.tmp)
			o.agg.Merge(&o.win, &o.tmp)
		}
		o.results = append(o.results, result[OUT]{Window{e - g.size, e}, o.agg.Result(&o.win)})
		e += g.slide
	}
	// The panes past their cleanup time are a prefix of ps: a pane's
	// cleanup time grows with its start. The key's next event is the
	// earliest of the others'; without lateness, the first one's (a pane
	// that starts earlier has its windows no later, and its cleanup is
	// its last window's end).
	drop := 0
	for drop < len(ps) && g.paneCleanup(ps[drop].start) <= wm {
		drop++
	}
	next := int64(0)
	for i := drop; i < len(ps); i++ {
		if n := g.paneNext(ps[i].start, wm); i == drop || n < next {
			next = n
		}
		if g.lateness == 0 {
			break
		}
	}
	// Writes from here on: no pane's bytes are read after this.
	if drop == len(ps) {
		o.b.Delete(o.id)
	} else {
		for i := range drop {
			o.remove(ps[i].start)
		}
	}
	clear(o.panes)
	o.panes = o.panes[:0]
	if drop < len(ps) {
		o.timers.RegisterEventTimeTimer(next)
	}
}

// Windows (sliding windows with one accumulator each): a record updates
// every window that holds it and is not past its cleanup time; each
// window has its own fire timer and, with lateness, cleanup timer,
// registered when its accumulator is created.

func (o *operator[T, ACC, OUT]) processWindows(v *T, ts, wm int64) {
	g := &o.g
	skipped := true
	// Latest window first: the order of Flink's assignWindows, in which
	// the windows within their lateness fire again.
	for s := g.lastStart(ts); s > ts-g.size; s -= g.slide {
		end := s + g.size
		if end-1+g.lateness <= wm {
			continue
		}
		skipped = false
		existed := o.addRecord(s, v)
		if end-1 <= wm {
			// Within its lateness: fire again now (the event-time
			// trigger's onElement).
			o.results = append(o.results, result[OUT]{Window{s, end}, o.agg.Result(&o.acc)})
		} else if !existed {
			o.timers.RegisterEventTimeTimer(end - 1)
		}
		if !existed && g.lateness > 0 {
			o.timers.RegisterEventTimeTimer(end - 1 + g.lateness)
		}
	}
	if skipped && ts+g.lateness <= wm {
		o.dropLate()
	}
}

func (o *operator[T, ACC, OUT]) timerWindows(ts int64) {
	g := &o.g
	if e := ts + 1; g.isEnd(e) && o.get(e-g.size, &o.win) {
		o.results = append(o.results, result[OUT]{Window{e - g.size, e}, o.agg.Result(&o.win)})
		if g.lateness == 0 {
			o.remove(e - g.size)
		}
	}
	if e := ts + 1 - g.lateness; g.lateness > 0 && g.isEnd(e) {
		o.remove(e - g.size)
	}
}

// Sessions. The sessions of a key are its map state's entries, user key
// the start, value the end and the accumulator; they never intersect
// (Flink's rule: touching counts), because a record's session merges with
// every session it intersects. Flink's TimeWindow.mergeWindows sorts the
// windows by start and merges each into the running cover it intersects;
// since the existing sessions are pairwise apart, the cover of the new
// session is exactly the union of the sessions that intersect it, which is
// what processSession merges. Per record the key's sessions are scanned
// (a key has few at a time).
//
// Timers are per key and timestamp, while Flink's are per window: when a
// merge retires a session, its fire and cleanup timers are deleted only if
// no remaining session of the key fires or is cleaned up at the same time.

// scanSession is the RangeUser callback that collects the current key's
// sessions.
func (o *operator[T, ACC, OUT]) scanSession(uk, v []byte) bool {
	if len(uk) != 8 || len(v) < 8 {
		panic(fmt.Errorf("%w: window state %q holds a session of %d+%d bytes", keyed.ErrCorrupt, o.name, len(uk), len(v)))
	}
	start := int64(binary.BigEndian.Uint64(uk))
	end := int64(binary.BigEndian.Uint64(v))
	o.sessions = append(o.sessions, session{w: Window{start, end}, raw: v[8:]})
	return true
}

// loadSessions collects the current key's sessions, in order of start.
func (o *operator[T, ACC, OUT]) loadSessions() {
	o.sessions = o.sessions[:0]
	o.b.RangeUser(o.id, o.scan)
	slices.SortFunc(o.sessions, func(a, b session) int {
		switch {
		case a.w.Start < b.w.Start:
			return -1
		case a.w.Start > b.w.Start:
			return 1
		}
		return 0
	})
}

func (o *operator[T, ACC, OUT]) putSession(w Window, acc *ACC) {
	o.buf = binary.BigEndian.AppendUint64(o.buf[:0], uint64(w.End))
	o.buf = o.agg.Codec.Append(o.buf, *acc)
	o.b.PutUser(o.id, o.userKey(w.Start), o.buf)
}

func intersects(a, b Window) bool { return a.Start <= b.End && a.End >= b.Start }

func (o *operator[T, ACC, OUT]) processSession(v *T, ts, wm int64) {
	g := &o.g
	o.loadSessions()
	merged := Window{ts, ts + g.gap}
	hits, same := 0, -1
	for i := range o.sessions {
		s := &o.sessions[i]
		if !intersects(s.w, Window{ts, ts + g.gap}) {
			continue
		}
		s.hit = true
		if hits == 0 {
			o.decode(s.raw, &o.acc)
		} else {
			o.decode(s.raw, &o.tmp)
			o.agg.Merge(&o.acc, &o.tmp)
		}
		hits++
		merged = Window{min(merged.Start, s.w.Start), max(merged.End, s.w.End)}
	}
	if merged.MaxTimestamp()+g.lateness <= wm {
		// Only a session that merges with none can be late: every
		// existing one is before its cleanup time. Flink checks after
		// the merge, and so does this.
		o.clearSessions()
		o.dropLate()
		return
	}
	if hits == 0 {
		o.acc = o.agg.Create()
	}
	o.agg.Add(&o.acc, v)
	// Writes: no session raw bytes are read from here on.
	for i := range o.sessions {
		s := &o.sessions[i]
		if !s.hit {
			continue
		}
		if s.w == merged {
			same = i
			continue
		}
		if s.w.Start != merged.Start {
			o.remove(s.w.Start)
		}
	}
	o.putSession(merged, &o.acc)
	if hits == 1 && same >= 0 {
		// The record fell into an existing session: its timers stand.
		if merged.MaxTimestamp() <= wm {
			o.results = append(o.results, result[OUT]{merged, o.agg.Result(&o.acc)})
		}
		o.clearSessions()
		return
	}
	// Retire the timers of the merged sessions that no remaining session
	// shares; remaining: the sessions not hit, and merged.
	for i := range o.sessions {
		s := &o.sessions[i]
		if !s.hit || s.w == merged {
			continue
		}
		o.deleteTimerUnlessUsed(s.w.MaxTimestamp(), merged)
		if g.lateness > 0 {
			o.deleteTimerUnlessUsed(s.w.MaxTimestamp()+g.lateness, merged)
		}
	}
	if merged.MaxTimestamp() > wm {
		o.timers.RegisterEventTimeTimer(merged.MaxTimestamp())
	} else {
		o.results = append(o.results, result[OUT]{merged, o.agg.Result(&o.acc)})
	}
	if g.lateness > 0 {
		o.timers.RegisterEventTimeTimer(merged.MaxTimestamp() + g.lateness)
	}
	o.clearSessions()
}

// deleteTimerUnlessUsed deletes the key's timer at ts unless merged or a
// session the record did not hit fires or is cleaned up at ts.
func (o *operator[T, ACC, OUT]) deleteTimerUnlessUsed(ts int64, merged Window) {
	used := func(w Window) bool {
		return w.MaxTimestamp() == ts || (o.g.lateness > 0 && w.MaxTimestamp()+o.g.lateness == ts)
	}
	if used(merged) {
		return
	}
	for i := range o.sessions {
		if s := &o.sessions[i]; !s.hit && used(s.w) {
			return
		}
	}
	o.timers.DeleteEventTimeTimer(ts)
}

// clearSessions forgets the scanned sessions (their bytes are the
// backend's pages).
func (o *operator[T, ACC, OUT]) clearSessions() {
	clear(o.sessions)
	o.sessions = o.sessions[:0]
}

// timerSessions fires the session ending at ts+1, if any, and drops the
// sessions whose cleanup time is ts (or earlier: none should be left).
func (o *operator[T, ACC, OUT]) timerSessions(ts int64) {
	o.loadSessions()
	o.dels = o.dels[:0]
	for i := range o.sessions {
		s := &o.sessions[i]
		if s.w.MaxTimestamp() == ts {
			o.decode(s.raw, &o.win)
			o.results = append(o.results, result[OUT]{s.w, o.agg.Result(&o.win)})
		}
		if s.w.MaxTimestamp()+o.g.lateness <= ts {
			o.dels = append(o.dels, s.w.Start)
		}
	}
	o.clearSessions()
	for _, start := range o.dels {
		o.remove(start)
	}
}
