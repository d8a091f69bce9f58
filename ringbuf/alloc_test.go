package ringbuf

import "testing"

// The hot paths allocate nothing. Each check runs enough operations to
// wrap the ring several times.
func TestZeroAllocs(t *testing.T) {
	f := func(name string, op func()) {
		t.Helper()
		if n := testing.AllocsPerRun(1000, op); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
	r := New[int64](64)
	var sum int64

	f("TryPush+TryPop", func() {
		r.TryPush(1)
		v, _ := r.TryPop()
		sum += v
	})
	f("Push+Pop", func() {
		_ = r.Push(2)
		v, _ := r.Pop()
		sum += v
	})
	f("Reserve+Publish+Peek+Release", func() {
		s := r.Reserve(24)
		for i := range s {
			s[i] = int64(i)
		}
		r.Publish(len(s))
		p := r.Peek(24)
		for _, v := range p {
			sum += v
		}
		r.Release(len(p))
	})
	f("TryReserve+Publish+Read+Release", func() {
		s := r.TryReserve(10)
		r.Publish(len(s))
		p, _ := r.Read(10)
		r.Release(len(p))
	})
	w := NewWaiter()
	f("Wake", w.Wake)
	f("Await ready", func() { WaitStrategy{}.Await(w, r.producerReady) })
	f("Len+Closed+Drained", func() {
		sum += int64(r.Len())
		if r.Closed() || r.Drained() {
			sum++
		}
	})
	sink = sum
}
