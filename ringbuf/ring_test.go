package ringbuf

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// mustPanic runs f and fails unless it panics with a message containing
// want.
func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic, want one containing %q", want)
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
			t.Fatalf("panic %q, want one containing %q", msg, want)
		}
	}()
	f()
}

func TestNewCapacity(t *testing.T) {
	f := func(capacity, want int) {
		t.Helper()
		if got := New[struct{}](capacity).Cap(); got != want {
			t.Errorf("New(%d).Cap() = %d, want %d", capacity, got, want)
		}
	}
	f(2, 2)
	f(3, 4)
	f(4, 4)
	f(5, 8)
	f(1000, 1024)
	f(1024, 1024)
	f(1025, 2048)
	f(MaxCapacity-1, MaxCapacity)
	f(MaxCapacity, MaxCapacity)

	for _, c := range []int{-1, 0, 1, MaxCapacity + 1, 1 << 40} {
		mustPanic(t, "out of range", func() { New[int](c) })
	}
}

func TestPushPopWrapAround(t *testing.T) {
	r := New[int](4)
	next, want := 0, 0
	// Push and pop in uneven steps so the indices wrap many times.
	for round := range 50 {
		for range round%5 + 1 {
			if r.TryPush(next) {
				next++
			}
		}
		if r.Len() > r.Cap() {
			t.Fatalf("Len %d > Cap %d", r.Len(), r.Cap())
		}
		for range round%3 + 1 {
			v, ok := r.TryPop()
			if !ok {
				break
			}
			if v != want {
				t.Fatalf("popped %d, want %d", v, want)
			}
			want++
		}
	}
	for {
		v, ok := r.TryPop()
		if !ok {
			break
		}
		if v != want {
			t.Fatalf("popped %d, want %d", v, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d items, pushed %d", want, next)
	}
}

func TestTryPushFull(t *testing.T) {
	r := New[int](2)
	if !r.TryPush(1) || !r.TryPush(2) {
		t.Fatal("TryPush failed on a ring with room")
	}
	if r.TryPush(3) {
		t.Fatal("TryPush succeeded on a full ring")
	}
	if r.Len() != 2 {
		t.Fatalf("Len = %d, want 2", r.Len())
	}
	if v, _ := r.TryPop(); v != 1 {
		t.Fatalf("popped %d, want 1", v)
	}
	if !r.TryPush(3) {
		t.Fatal("TryPush failed after a pop freed a slot")
	}
	if _, ok := New[int](2).TryPop(); ok {
		t.Fatal("TryPop succeeded on an empty ring")
	}
}

func TestReserveIsContiguous(t *testing.T) {
	r := New[int](8)
	// Move both indices to 5.
	for i := range 5 {
		r.TryPush(i)
	}
	for range 5 {
		r.TryPop()
	}
	s := r.TryReserve(8)
	if len(s) != 3 || cap(s) != 3 {
		t.Fatalf("reservation at 5 of 8: len %d cap %d, want 3 and 3 (up to the end)", len(s), cap(s))
	}
	copy(s, []int{10, 11, 12})
	r.Publish(3)
	s = r.TryReserve(8)
	if len(s) != 5 {
		t.Fatalf("reservation after wrap: len %d, want 5 (the free rest)", len(s))
	}
	copy(s, []int{13, 14, 15, 16, 17})
	r.Publish(5)
	if s := r.TryReserve(1); len(s) != 0 {
		t.Fatalf("reservation on a full ring: len %d, want 0", len(s))
	}

	p := r.Peek(8)
	if !slices.Equal(p, []int{10, 11, 12}) {
		t.Fatalf("Peek = %v, want [10 11 12] (up to the end)", p)
	}
	r.Release(3)
	p = r.Peek(2)
	if !slices.Equal(p, []int{13, 14}) {
		t.Fatalf("Peek(2) = %v, want [13 14]", p)
	}
	r.Release(2)
	p = r.Peek(100)
	if !slices.Equal(p, []int{15, 16, 17}) {
		t.Fatalf("Peek(100) = %v, want [15 16 17]", p)
	}
	r.Release(3)
	if p := r.Peek(1); len(p) != 0 {
		t.Fatalf("Peek on an empty ring = %v", p)
	}
}

func TestPartialPublishAndRelease(t *testing.T) {
	r := New[int](8)
	s := r.TryReserve(6)
	for i := range s {
		s[i] = i
	}
	r.Publish(2)
	if r.Len() != 2 {
		t.Fatalf("Len = %d after Publish(2)", r.Len())
	}
	r.Publish(3) // slots 2..4 of the same reservation
	mustPanic(t, "Publish(2) with 1 slots reserved", func() { r.Publish(2) })
	r.Publish(1)

	p := r.Peek(8)
	if !slices.Equal(p, []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("Peek = %v", p)
	}
	r.Release(4)
	if v, _ := r.TryPop(); v != 4 {
		t.Fatalf("popped %d after releasing 4, want 4", v)
	}
	// TryPop cancelled the rest of the peek.
	mustPanic(t, "Release(1) with 0 items peeked", func() { r.Release(1) })
	if v, _ := r.TryPop(); v != 5 {
		t.Fatalf("popped %d, want 5", v)
	}
}

func TestMisusePanics(t *testing.T) {
	r := New[int](4)
	mustPanic(t, "Publish(1) with 0 slots reserved", func() { r.Publish(1) })
	mustPanic(t, "Publish(-1)", func() { r.Publish(-1) })
	mustPanic(t, "Release(1) with 0 items peeked", func() { r.Release(1) })
	mustPanic(t, "Release(-1)", func() { r.Release(-1) })
	mustPanic(t, "TryReserve(0)", func() { r.TryReserve(0) })
	mustPanic(t, "TryReserve(0)", func() { r.Reserve(0) })
	mustPanic(t, "Peek(0)", func() { r.Peek(0) })
	mustPanic(t, "Peek(-3)", func() { _, _ = r.Read(-3) })
	mustPanic(t, "SetConsumerWaiter(nil)", func() { r.SetConsumerWaiter(nil) })
	mustPanic(t, "SetProducerWaiter(nil)", func() { r.SetProducerWaiter(nil) })
	mustPanic(t, "SpinIterations", func() { r.SetWaitStrategy(WaitStrategy{SpinIterations: MaxSpinIterations + 1}) })

	// A push cancels the reservation; so does a new reservation.
	r.TryReserve(2)
	r.TryPush(7)
	mustPanic(t, "Publish(1) with 0 slots reserved", func() { r.Publish(1) })
	r.TryReserve(3)
	r.TryReserve(1)
	mustPanic(t, "Publish(2) with 1 slots reserved", func() { r.Publish(2) })
	r.Publish(0)

	// A new Peek replaces the previous one.
	r.Peek(1)
	mustPanic(t, "Release(2) with 1 items peeked", func() { r.Release(2) })
	r.Release(0)
}

func TestCloseDrain(t *testing.T) {
	r := New[int](8)
	for i := range 5 {
		if err := r.Push(i); err != nil {
			t.Fatal(err)
		}
	}
	if r.Closed() || r.Drained() {
		t.Fatal("Closed or Drained before Close")
	}
	r.TryReserve(2) // cancelled by Close
	r.Close()
	r.Close() // idempotent
	if !r.Closed() || r.Drained() {
		t.Fatalf("after Close with 5 items: Closed %v Drained %v, want true false", r.Closed(), r.Drained())
	}
	mustPanic(t, "Publish(1) with 0 slots reserved", func() { r.Publish(1) })
	if err := r.Push(9); !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Close = %v, want ErrClosed", err)
	}
	if r.TryPush(9) {
		t.Fatal("TryPush after Close succeeded")
	}
	if s := r.TryReserve(1); len(s) != 0 {
		t.Fatal("TryReserve after Close returned slots")
	}
	if s := r.Reserve(1); len(s) != 0 {
		t.Fatal("Reserve after Close returned slots")
	}

	if v, err := r.Pop(); v != 0 || err != nil {
		t.Fatalf("Pop = %d, %v; want 0, nil", v, err)
	}
	s, err := r.Read(2)
	if err != nil || !slices.Equal(s, []int{1, 2}) {
		t.Fatalf("Read(2) = %v, %v", s, err)
	}
	r.Release(2)
	s, err = r.Read(10)
	if err != nil || !slices.Equal(s, []int{3, 4}) {
		t.Fatalf("Read(10) = %v, %v", s, err)
	}
	if r.Drained() {
		t.Fatal("Drained with 2 items peeked but not released")
	}
	r.Release(2)
	if !r.Drained() {
		t.Fatal("not Drained after consuming everything")
	}
	if _, err := r.Pop(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pop on drained ring = %v, want ErrClosed", err)
	}
	if _, err := r.Read(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read on drained ring = %v, want ErrClosed", err)
	}
	if _, ok := r.TryPop(); ok {
		t.Fatal("TryPop on drained ring succeeded")
	}
}

func TestCloseEmpty(t *testing.T) {
	r := New[string](2)
	r.Close()
	if !r.Drained() {
		t.Fatal("empty closed ring is not Drained")
	}
	if _, err := r.Pop(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pop = %v, want ErrClosed", err)
	}
}

func TestLen(t *testing.T) {
	r := New[int](4)
	for i := range 4 {
		if r.Len() != i {
			t.Fatalf("Len = %d, want %d", r.Len(), i)
		}
		r.TryPush(i)
	}
	if r.Len() != 4 {
		t.Fatalf("Len of full ring = %d", r.Len())
	}
	r.Peek(3)
	if r.Len() != 4 {
		t.Fatalf("Len changed by Peek: %d", r.Len())
	}
	r.Release(3)
	if r.Len() != 1 {
		t.Fatalf("Len after Release(3) = %d", r.Len())
	}
}

func TestWaitStrategyOptions(t *testing.T) {
	var s WaitStrategy
	s.EnsureDefaults()
	want := WaitStrategy{
		SpinIterations:    DefaultSpinIterations,
		MinSpinIterations: DefaultMinSpinIterations,
		ProbeEvery:        DefaultProbeEvery,
		PauseRounds:       DefaultPauseRounds,
	}
	if s != want {
		t.Fatalf("EnsureDefaults = %+v, want %+v", s, want)
	}
	small := WaitStrategy{SpinIterations: 2}
	small.EnsureDefaults()
	if small.MinSpinIterations > 2 || small.MinSpinIterations < 1 {
		t.Fatalf("MinSpinIterations default above SpinIterations 2: %+v", small)
	}
	neg := WaitStrategy{SpinIterations: -1, PauseRounds: -1}
	neg.EnsureDefaults()
	if neg.SpinIterations != -1 || neg.PauseRounds != -1 {
		t.Fatalf("EnsureDefaults changed negative fields: %+v", neg)
	}
	for _, ok := range []WaitStrategy{{}, neg, {SpinIterations: 8, MinSpinIterations: 8, ProbeEvery: 1}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}

	err := WaitStrategy{
		SpinIterations:    MaxSpinIterations + 1,
		MinSpinIterations: -1,
		ProbeEvery:        -1,
		PauseRounds:       MaxPauseRounds + 1,
	}.Validate()
	if !errors.Is(err, ErrInvalidWaitStrategy) {
		t.Fatalf("Validate = %v, want ErrInvalidWaitStrategy", err)
	}
	for _, field := range []string{"SpinIterations", "MinSpinIterations", "ProbeEvery", "PauseRounds"} {
		if !strings.Contains(err.Error(), field+" ") {
			t.Errorf("Validate error %q does not name %s", err, field)
		}
	}
	err = WaitStrategy{MinSpinIterations: DefaultSpinIterations + 1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "above SpinIterations") {
		t.Errorf("Validate(MinSpinIterations above the default SpinIterations) = %v", err)
	}
}
