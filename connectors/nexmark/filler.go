package nexmark

import "unsafe"

// A Filler fills events like Config.Fill, but carves the strings of many
// events out of one chunk of memory (fillerChunkBytes) instead of
// allocating them per event: that saves an allocation per event and the
// garbage collector's work on it (about a seventh of an event's cost in
// BenchmarkGenerate).
//
// The strings stay immutable: a Filler only ever writes into the part of
// its chunk that no string references yet. But a string that is kept
// keeps its whole chunk reachable: an operator that keeps a few strings
// of many events for long (a join's state, say) should copy them
// (strings.Clone), or use Config.Fill, whose events own their strings.
//
// A Filler is not safe for concurrent use; use one per goroutine.
type Filler struct {
	cfg   Config
	arena arena
}

// NewFiller returns a Filler of cfg. It returns an error naming every
// invalid field of cfg (after EnsureDefaults).
func NewFiller(cfg Config) (*Filler, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Filler{cfg: cfg}, nil
}

// Fill sets *e to event number n, exactly as Config.Fill does (EventAt).
// n must be in [0, MaxEvents), else Fill panics.
func (f *Filler) Fill(n int64, e *Event) {
	f.cfg.fillFrom(n, e, &f.arena)
}

// fillerChunkBytes is the size of a Filler's chunks: about 110 bids, or
// 17 auctions, per allocation. Larger chunks were not measurably faster.
const fillerChunkBytes = 8 << 10

// arena hands out the memory of event strings. The zero value is ready;
// a nil *arena allocates every event's strings on their own.
type arena struct {
	// chunk[used:] is unused; chunk[:used] belongs to strings already
	// returned and is never written again. An offset rather than a slice
	// of the free part, so that carving writes no pointer (a pointer
	// write costs a write barrier while the garbage collector marks).
	chunk *[fillerChunkBytes]byte
	used  int
}

// eventString returns one string holding head followed by extraLen
// characters of nextExactString drawn from r: the backing store of one
// event's generated strings, which the caller slices. The bytes are
// written before the string is made and never after, so the string is
// immutable as Go requires; unsafe.String only saves copying them once
// more.
func (a *arena) eventString(head []byte, extraLen int, r *JavaRandom) string {
	n := len(head) + extraLen
	if n == 0 {
		return ""
	}
	b := a.alloc(n)
	copy(b, head)
	fillExactString(b[len(head):], r)
	return unsafe.String(&b[0], n)
}

// alloc returns n bytes that no string references.
func (a *arena) alloc(n int) []byte {
	if a == nil || n > fillerChunkBytes/4 {
		return make([]byte, n)
	}
	if a.chunk == nil || n > fillerChunkBytes-a.used {
		a.chunk, a.used = new([fillerChunkBytes]byte), 0
	}
	b := a.chunk[a.used : a.used+n : a.used+n]
	a.used += n
	return b
}
