package ringbuf

import (
	"errors"
	"fmt"
	"testing"
)

// FuzzRing drives one ring from one goroutine with a random sequence of
// producer and consumer operations and checks every result against a model:
// the positions head <= tail (counted from the start, never wrapped), the
// outstanding reservation and peek, and closed. The producer writes the
// absolute position p into the slot for item p, so any mistake in the
// wrap-around arithmetic (a wrong slot, a stale slot, a slice past the
// end of the buffer) shows up as a wrong value.
//
// The first byte picks the capacity (2 to 16 before rounding); each later
// byte is one operation (low 4 bits) with an argument (high 4 bits).
func FuzzRing(f *testing.F) {
	f.Add([]byte{3, 0x02, 0x13, 0x04, 0x25, 0x01, 0x00, 0x00, 0x00, 0x11})
	f.Add([]byte{6, 0xf2, 0x73, 0x34, 0x15, 0x62, 0x33, 0x04, 0xf5, 0x06, 0x04, 0xf5, 0x04})
	f.Add([]byte{0, 0x00, 0x00, 0x00, 0x01, 0x01, 0x01, 0x08, 0x09, 0x0a, 0x0b})
	f.Add([]byte{14, 0x52, 0x43, 0x13, 0x84, 0x35, 0x25, 0x92, 0x93, 0x94, 0x95, 0x0c, 0x0d})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 {
			return
		}
		requested := 2 + int(ops[0])%15
		r := New[uint64](requested)
		size := uint64(r.Cap())
		if size < uint64(requested) || size&(size-1) != 0 || size >= 2*uint64(requested) {
			t.Fatalf("New(%d).Cap() = %d", requested, size)
		}
		m := ringModel{size: size}
		for step, b := range ops[1:] {
			op, arg := int(b&0x0f), int(b>>4)
			if err := m.apply(r, op, arg); err != nil {
				t.Fatalf("step %d (op %d, arg %d), model %+v: %v", step, op, arg, m, err)
			}
			if err := m.check(r); err != nil {
				t.Fatalf("after step %d (op %d, arg %d), model %+v: %v", step, op, arg, m, err)
			}
		}
	})
}

type ringModel struct {
	size       uint64
	head, tail uint64 // positions of the next item to consume and publish
	reserved   int    // slots reserved, starting at tail
	peeked     int    // items peeked, starting at head
	closed     bool
}

func (m *ringModel) readable() uint64 { return m.tail - m.head }

// apply performs one operation on r and on the model.
func (m *ringModel) apply(r *Ring[uint64], op, arg int) error {
	n := 1 + arg%int(2*m.size) // request sizes up to twice the capacity
	switch op {
	case 0, 1: // TryPush
		ok := r.TryPush(m.tail)
		want := !m.closed && m.readable() < m.size
		if ok != want {
			return fmt.Errorf("TryPush = %v, want %v", ok, want)
		}
		m.reserved = 0
		if ok {
			m.tail++
		}
	case 2: // Push, where it would not block
		if !m.closed && m.readable() == m.size {
			return nil
		}
		err := r.Push(m.tail)
		m.reserved = 0
		if m.closed {
			if !errors.Is(err, ErrClosed) {
				return fmt.Errorf("Push after Close = %v", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("Push = %v", err)
		}
		m.tail++
	case 3, 4: // TryReserve, or Reserve where it would not block
		var s []uint64
		if op == 4 && !m.closed && m.readable() == m.size {
			return nil
		}
		if op == 3 {
			s = r.TryReserve(n)
		} else {
			s = r.Reserve(n)
		}
		want := 0
		if !m.closed {
			want = int(min(uint64(n), m.size-m.tail%m.size, m.size-m.readable()))
		}
		if len(s) != want || cap(s) != want {
			return fmt.Errorf("reserve(%d) returned len %d cap %d, want %d", n, len(s), cap(s), want)
		}
		for i := range s {
			s[i] = m.tail + uint64(i)
		}
		m.reserved = want
	case 5, 6: // Publish part or all of the reservation
		k := arg % (m.reserved + 1)
		if op == 6 {
			k = m.reserved
		}
		r.Publish(k)
		m.tail += uint64(k)
		m.reserved -= k
	case 7, 8: // TryPop, or Pop where it would not block
		if op == 8 {
			if !m.closed && m.readable() == 0 {
				return nil
			}
			v, err := r.Pop()
			m.peeked = 0
			if m.readable() == 0 {
				if !errors.Is(err, ErrClosed) {
					return fmt.Errorf("Pop on drained ring = %d, %v", v, err)
				}
				return nil
			}
			if err != nil || v != m.head {
				return fmt.Errorf("Pop = %d, %v; want %d", v, err, m.head)
			}
			m.head++
			return nil
		}
		v, ok := r.TryPop()
		m.peeked = 0
		if ok != (m.readable() > 0) {
			return fmt.Errorf("TryPop ok = %v with %d readable", ok, m.readable())
		}
		if ok {
			if v != m.head {
				return fmt.Errorf("TryPop = %d, want %d", v, m.head)
			}
			m.head++
		}
	case 9, 10: // Peek, or Read where it would not block
		var s []uint64
		if op == 10 {
			if !m.closed && m.readable() == 0 {
				return nil
			}
			var err error
			s, err = r.Read(n)
			if m.readable() == 0 {
				m.peeked = 0
				if !errors.Is(err, ErrClosed) || len(s) != 0 {
					return fmt.Errorf("Read on drained ring = %v, %v", s, err)
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("Read = %v", err)
			}
		} else {
			s = r.Peek(n)
		}
		want := int(min(uint64(n), m.size-m.head%m.size, m.readable()))
		if len(s) != want || cap(s) != want {
			return fmt.Errorf("peek(%d) returned len %d cap %d, want %d", n, len(s), cap(s), want)
		}
		for i, v := range s {
			if v != m.head+uint64(i) {
				return fmt.Errorf("peek(%d)[%d] = %d, want %d", n, i, v, m.head+uint64(i))
			}
		}
		m.peeked = want
	case 11, 12: // Release part or all of the peek
		k := arg % (m.peeked + 1)
		if op == 12 {
			k = m.peeked
		}
		r.Release(k)
		m.head += uint64(k)
		m.peeked -= k
	case 13: // Close
		r.Close()
		m.closed = true
		m.reserved = 0
	case 14: // misuse: publishing or releasing more than is outstanding
		if err := expectPanic(func() { r.Publish(m.reserved + 1 + arg) }); err != nil {
			return err
		}
		if err := expectPanic(func() { r.Release(m.peeked + 1 + arg) }); err != nil {
			return err
		}
	case 15: // nothing; check only
	}
	return nil
}

// check compares the observers with the model.
func (m *ringModel) check(r *Ring[uint64]) error {
	if got := r.Len(); got != int(m.readable()) {
		return fmt.Errorf("Len = %d, want %d", got, m.readable())
	}
	if r.Closed() != m.closed {
		return fmt.Errorf("Closed = %v", r.Closed())
	}
	if want := m.closed && m.readable() == 0; r.Drained() != want {
		return fmt.Errorf("Drained = %v, want %v", r.Drained(), want)
	}
	if r.reserved != m.reserved || r.peeked != m.peeked {
		return fmt.Errorf("ring has %d reserved, %d peeked", r.reserved, r.peeked)
	}
	return nil
}

func expectPanic(f func()) (err error) {
	defer func() {
		if recover() == nil {
			err = errors.New("misuse did not panic")
		}
	}()
	f()
	return nil
}
