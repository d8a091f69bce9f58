package keyed

import (
	"encoding/binary"
	"fmt"
	"iter"
)

// List state: ListState, stored as one value record per key that
// AppendValue grows in place (geometrically, when it must move).

// ListState is a list of T per key, stored as one value of elements each
// prefixed by its uvarint length. Add appends in amortized O(1).
type ListState[T any] struct {
	b     *Backend
	id    StateID
	name  string
	c     Codec[T]
	elem  []byte
	frame []byte
}

// NewListState registers (or looks up) the list state name in b.
func NewListState[T any](b *Backend, name string, c Codec[T], so StateOptions) (*ListState[T], error) {
	id, err := b.Register(name, KindList, so)
	if err != nil {
		return nil, err
	}
	return &ListState[T]{b: b, id: id, name: name, c: c}, nil
}

// ID is the state's ID in its backend.
func (s *ListState[T]) ID() StateID { return s.id }

// Add appends v to the current key's list.
func (s *ListState[T]) Add(v T) {
	st := s.b.stateOf(s.id, false)
	s.elem = s.c.Append(s.elem[:0], v)
	s.frame = binary.AppendUvarint(s.frame[:0], uint64(len(s.elem)))
	s.b.appendValue(st, s.id, s.frame, s.elem)
}

// All iterates over the current key's list in insertion order. Writing to
// the backend during the iteration panics. A range loop over All does not
// allocate (the iterator is a method value the compiler inlines).
func (s *ListState[T]) All() iter.Seq[T] { return s.all }

func (s *ListState[T]) all(yield func(T) bool) {
	raw, ok := s.b.Get(s.id)
	if !ok {
		return
	}
	mods := s.b.mods
	for len(raw) > 0 {
		n, m := binary.Uvarint(raw)
		if m <= 0 || n > uint64(len(raw)-m) {
			corruptPanic(s.name, fmt.Errorf("%w: bad list element length", ErrCorrupt))
		}
		v, err := s.c.Decode(raw[m : m+int(n)])
		if err != nil {
			corruptPanic(s.name, err)
		}
		raw = raw[m+int(n):]
		if !yield(v) {
			return
		}
		if s.b.mods != mods {
			panic("keyed: the backend was written during a list state iteration")
		}
	}
}

// Update replaces the current key's list with vs (an empty vs clears it).
func (s *ListState[T]) Update(vs []T) {
	if len(vs) == 0 {
		s.Clear()
		return
	}
	s.frame = s.frame[:0]
	for _, v := range vs {
		s.elem = s.c.Append(s.elem[:0], v)
		s.frame = binary.AppendUvarint(s.frame, uint64(len(s.elem)))
		s.frame = append(s.frame, s.elem...)
	}
	s.b.Put(s.id, s.frame)
}

// Clear removes the current key's list.
func (s *ListState[T]) Clear() { s.b.Delete(s.id) }

// AppendValue appends data to the current key's value of state id (a
// non-map state), creating the value if there is none (or it expired).
// The value's space grows geometrically, so n appends cost O(n) bytes
// copied in total. ListState uses it.
func (b *Backend) AppendValue(id StateID, data []byte) {
	st := b.stateOf(id, false)
	b.appendValue(st, id, data, nil)
}

func (b *Backend) appendValue(st *stateInfo, id StateID, d1, d2 []byte) {
	var now int64
	if st.ttlMs > 0 {
		now = b.opts.Clock()
	}
	h := valueHash(b.cur.hash, id)
	hw := hwOf(id, 0)
	t := b.dir.tables[b.cur.idx]
	var at int
	var addr uint32
	if t != nil {
		at, addr, _ = b.find(t, h, hw, b.cur.enc, nil)
	}
	if addr != 0 {
		p, off := b.rec(t, addr)
		old := recValue(p, off)
		if st.ttlMs > 0 && expired(old, st.ttlMs, now) {
			addr = 0 // replace the expired value
		} else {
			n := len(old) + len(d1) + len(d2)
			checkValueSize(n - ttlOverhead(st))
			t = b.writableTable(b.cur.idx)
			b.touch(t)
			if n <= recValCap(p, off) {
				p = b.writableData(t, int(addr>>b.pageShift))
				vo := recValOff(p, off)
				if st.ttlMs > 0 {
					binary.LittleEndian.PutUint64(p[vo:], uint64(now))
				}
				w := vo + len(old)
				w += copy(p[w:], d1)
				copy(p[w:], d2)
				put32(p[off+4:], n)
				if st.ttlMs > 0 {
					b.logAddr(t, addr) // the timestamp changed too
				} else {
					b.logAppendTo(t, addr, len(old))
				}
				return
			}
			v := val{a: old, b: d1}
			if st.ttlMs > 0 {
				v = val{hasTS: true, ts: now, a: old[ttlBytes:], b: d1}
			}
			if len(d2) > 0 {
				// Only ListState passes two parts; join them in scratch.
				b.scratch = append(append(b.scratch[:0], d1...), d2...)
				v.b = b.scratch
			}
			newCap := max(n, 2*recValCap(p, off), 16)
			newCap = min(newCap, MaxValueBytes+ttlOverhead(st))
			b.relocate(t, at, addr, v, newCap)
			b.maybeCompact(t)
			return
		}
	}
	checkValueSize(len(d1) + len(d2))
	v := val{a: d1, b: d2}
	if st.ttlMs > 0 {
		v.hasTS, v.ts = true, now
	}
	t = b.putValue(&b.cur, id, v)
	b.maybeCompact(t)
}
