package coord

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	o := Options{Interval: time.Second}
	if err := o.Validate(); err != nil {
		t.Fatalf("zero fields with defaults must validate: %v", err)
	}
	o.EnsureDefaults()
	want := Options{Interval: time.Second, Timeout: DefaultTimeout, MaxConcurrent: DefaultMaxConcurrent, Mode: ExactlyOnce}
	if o != want {
		t.Fatalf("EnsureDefaults: got %+v, want %+v", o, want)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	// Explicit values are kept.
	o = Options{Interval: 1, Timeout: 2, MinPause: 3, MaxConcurrent: 4, TolerableFailures: 5, Mode: AtLeastOnce}
	kept := o
	o.EnsureDefaults()
	if o != kept {
		t.Fatalf("EnsureDefaults changed explicit values: %+v", o)
	}
}

func TestOptionsValidate(t *testing.T) {
	f := func(o Options, want ...string) {
		t.Helper()
		err := o.Validate()
		if len(want) == 0 {
			if err != nil {
				t.Fatalf("%+v: unexpected error %v", o, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("%+v: no error, want %q", o, want)
		}
		if !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("%v does not wrap ErrInvalidOptions", err)
		}
		if n := len(strings.Split(err.Error(), "\n")); n != len(want) {
			t.Fatalf("%+v: %d problems reported, want %d: %v", o, n, len(want), err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%+v: error %q does not mention %q", o, err, w)
			}
		}
	}
	f(Options{Interval: time.Millisecond})
	f(Options{Interval: time.Millisecond, MaxConcurrent: MaxConcurrentLimit, Mode: AtLeastOnce})
	f(Options{}, "Interval")
	f(Options{Interval: -1}, "Interval")
	f(Options{Interval: 1, Timeout: -1}, "Timeout")
	f(Options{Interval: 1, MinPause: -1}, "MinPause")
	f(Options{Interval: 1, MaxConcurrent: -1}, "MaxConcurrent")
	f(Options{Interval: 1, MaxConcurrent: MaxConcurrentLimit + 1}, "MaxConcurrent")
	f(Options{Interval: 1, TolerableFailures: -1}, "TolerableFailures")
	f(Options{Interval: 1, Mode: 3}, "Mode")
	f(Options{Timeout: -1, MinPause: -1, MaxConcurrent: -1, TolerableFailures: -1, Mode: 9},
		"Interval", "Timeout", "MinPause", "MaxConcurrent", "TolerableFailures", "Mode")
}

func TestNewPanics(t *testing.T) {
	f := func(name string, fn func()) {
		t.Helper()
		defer func() {
			t.Helper()
			if r := recover(); r == nil {
				t.Fatalf("%s: no panic", name)
			} else if !strings.HasPrefix(r.(string), "coord: ") {
				t.Fatalf("%s: panic %q not prefixed", name, r)
			}
		}()
		fn()
	}
	ok := Options{Interval: time.Second}
	f("invalid options", func() { New(Options{}, []TaskID{1}, 1, epoch) })
	f("no tasks", func() { New(ok, nil, 1, epoch) })
	f("duplicate task", func() { New(ok, []TaskID{1, 2, 1}, 1, epoch) })
	f("first id 0", func() { New(ok, []TaskID{1}, 0, epoch) })
}

func TestNewCopiesTasks(t *testing.T) {
	tasks := []TaskID{4, 5}
	c := New(Options{Interval: time.Second}, tasks, 1, epoch)
	tasks[0] = 99
	c.Tick(epoch.Add(time.Second))
	if err := c.Step(epoch, Ack{Task: 4, ID: 1}); err != nil {
		t.Fatalf("New must copy its tasks: %v", err)
	}
	if got := c.Options(); got.Timeout != DefaultTimeout || got.MaxConcurrent != 1 || got.Mode != ExactlyOnce {
		t.Fatalf("Options() without defaults: %+v", got)
	}
}

func TestStepRejectsBadEvents(t *testing.T) {
	c := New(Options{Interval: time.Second}, []TaskID{1}, 1, epoch)
	for _, e := range []Event{nil, &Ack{Task: 1, ID: 1}, &Stop{}} {
		if err := c.Step(epoch, e); !errors.Is(err, ErrUnexpectedEvent) {
			t.Fatalf("Step(%#v): %v, want ErrUnexpectedEvent", e, err)
		}
	}
	if c.HasReady() {
		t.Fatal("a rejected event produced a Ready")
	}
}

// TestIDsMonotonic checks that ids are consecutive from firstID, also across
// aborts, and that NextID tells the next one.
func TestIDsMonotonic(t *testing.T) {
	const firstID = 1 << 40
	c := New(Options{Interval: time.Millisecond, Timeout: 2 * time.Millisecond, TolerableFailures: 1 << 30},
		[]TaskID{1}, firstID, epoch)
	want := uint64(firstID)
	for i := 1; i <= 300; i++ {
		if c.NextID() != want {
			t.Fatalf("NextID %d, want %d", c.NextID(), want)
		}
		c.Tick(epoch.Add(time.Duration(i) * time.Millisecond))
		rd := c.Ready()
		for _, tr := range rd.Trigger {
			if tr.ID != want {
				t.Fatalf("trigger %d, want %d", tr.ID, want)
			}
			want++
		}
		c.Advance(rd)
	}
	if want < firstID+100 {
		t.Fatalf("only %d triggers", want-firstID)
	}
	// History is bounded and holds the latest.
	h := c.Stats().History
	if len(h) != HistoryLen || h[len(h)-1].ID != want-1 || h[0].ID != want-HistoryLen {
		t.Fatalf("history: %d entries, %d..%d; want %d ending at %d", len(h), h[0].ID, h[len(h)-1].ID, HistoryLen, want-1)
	}
}

func TestTimeGoingBackwardsIsHarmless(t *testing.T) {
	c := New(Options{Interval: 100 * time.Millisecond, Timeout: time.Second}, []TaskID{1}, 1, epoch)
	c.Tick(epoch.Add(100 * time.Millisecond))
	c.Tick(epoch) // back in time: as if at 100ms
	rd := c.Ready()
	if len(rd.Trigger) != 1 {
		t.Fatalf("want one trigger, got %+v", rd)
	}
	c.Advance(rd)
	if err := c.Step(epoch, Ack{Task: 1, ID: 1}); err != nil {
		t.Fatal(err)
	}
	rd = c.Ready()
	c.Advance(rd)
	if err := c.Step(epoch, Persisted{ID: 1}); err != nil {
		t.Fatal(err)
	}
	rd = c.Ready()
	if len(rd.Complete) != 1 || !rd.Complete[0].CompletedAt.Equal(epoch.Add(100*time.Millisecond)) {
		t.Fatalf("completion must not go back in time: %+v", rd.Complete)
	}
}

func TestAdvancePanicsOnForeignReady(t *testing.T) {
	mk := func() *Coordinator {
		c := New(Options{Interval: time.Millisecond}, []TaskID{1}, 1, epoch)
		c.Tick(epoch.Add(time.Millisecond))
		return c
	}
	f := func(name string, fn func(c *Coordinator)) {
		t.Helper()
		c := mk()
		defer func() {
			t.Helper()
			if recover() == nil {
				t.Fatalf("%s: no panic", name)
			}
		}()
		fn(c)
	}
	f("unknown trigger", func(c *Coordinator) { c.Advance(Ready{Trigger: []Triggered{{ID: 7}}}) })
	f("too many", func(c *Coordinator) { c.Advance(Ready{Trigger: []Triggered{{ID: 1}, {ID: 2}}}) })
	f("persist not handed out", func(c *Coordinator) {
		c.Advance(c.Ready())
		_ = c.Step(epoch, Ack{Task: 1, ID: 1})
		c.Advance(Ready{Persist: []Pending{{ID: 1}}})
	})
	f("final complete", func(c *Coordinator) { c.Advance(Ready{FinalComplete: true}) })
	f("failed", func(c *Coordinator) { c.Advance(Ready{Failed: errors.New("x")}) })
}

// TestReadyIsTheCallersToKeep checks that later calls do not write into a
// returned Ready.
func TestReadyIsTheCallersToKeep(t *testing.T) {
	c := New(Options{Interval: time.Millisecond, MaxConcurrent: 2}, []TaskID{1}, 1, epoch)
	c.Tick(epoch.Add(time.Millisecond))
	rd := c.Ready()
	c.Advance(rd)
	c.Tick(epoch.Add(2 * time.Millisecond))
	rd2 := c.Ready()
	if rd.Trigger[0].ID != 1 || rd2.Trigger[0].ID != 2 {
		t.Fatalf("Ready aliased: %+v then %+v", rd.Trigger, rd2.Trigger)
	}
}

func TestErrorsWrapCauses(t *testing.T) {
	cause := errors.New("disk on fire")
	c := New(Options{Interval: time.Millisecond, TolerableFailures: 0}, []TaskID{1, 2}, 1, epoch)
	c.Tick(epoch.Add(time.Millisecond))
	if err := c.Step(epoch, Decline{Task: 2, ID: 1, Reason: ReasonError, Err: cause}); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Aborted) != 1 || !errors.Is(rd.Aborted[0].Err, ErrDeclined) || !errors.Is(rd.Aborted[0].Err, cause) {
		t.Fatalf("abort error %v must wrap ErrDeclined and the cause", rd.Aborted)
	}
	if !errors.Is(rd.Failed, ErrTooManyFailures) || !errors.Is(rd.Failed, cause) {
		t.Fatalf("Failed %v must wrap ErrTooManyFailures and the cause", rd.Failed)
	}

	c = New(Options{Interval: time.Millisecond}, []TaskID{1}, 1, epoch)
	if err := c.Step(epoch, TaskFailed{Task: 1, Err: cause}); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready().Failed; !errors.Is(err, ErrTaskFailed) || !errors.Is(err, cause) {
		t.Fatalf("Failed %v must wrap ErrTaskFailed and the cause", err)
	}

	c = New(Options{Interval: time.Millisecond}, []TaskID{1}, 1, epoch)
	c.Tick(epoch.Add(time.Millisecond))
	_ = c.Step(epoch, Ack{Task: 1, ID: 1})
	c.Advance(c.Ready())
	if err := c.Step(epoch, PersistFailed{ID: 1, Err: cause}); err != nil {
		t.Fatal(err)
	}
	rd = c.Ready()
	if !errors.Is(rd.Failed, ErrPersistFailed) || !errors.Is(rd.Failed, cause) || len(rd.Aborted) != 0 || len(rd.Complete) != 0 {
		t.Fatalf("PersistFailed: %+v", rd)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ExactlyOnce.String(), "exactly_once"},
		{AtLeastOnce.String(), "at_least_once"},
		{Mode(9).String(), "Mode(9)"},
		{ReasonSubsumed.String(), "subsumed"},
		{ReasonTaskFinished.String(), "task-finished"},
		{ReasonNotReady.String(), "not-ready"},
		{ReasonError.String(), "error"},
		{DeclineReason(0).String(), "DeclineReason(0)"},
		{AbortTimeout.String(), "timeout"},
		{AbortDeclined.String(), "declined"},
		{AbortSubsumed.String(), "subsumed"},
		{AbortTaskFailed.String(), "task-failed"},
		{AbortStopped.String(), "stopped"},
		{AbortJobFailed.String(), "job-failed"},
		{AbortReason(0).String(), "AbortReason(0)"},
		{StatusInProgress.String(), "in-progress"},
		{StatusPersisting.String(), "persisting"},
		{StatusCompleted.String(), "completed"},
		{StatusAborted.String(), "aborted"},
		{StatusAbandoned.String(), "abandoned"},
		{Status(0).String(), "Status(0)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// BenchmarkCheckpointCycle measures one full checkpoint with 64 tasks:
// trigger, 64 acks, persist, complete.
func BenchmarkCheckpointCycle(b *testing.B) {
	const ntasks = 64
	tasks := make([]TaskID, ntasks)
	for i := range tasks {
		tasks[i] = TaskID(i)
	}
	now := epoch
	c := New(Options{Interval: time.Millisecond}, tasks, 1, now)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		c.Tick(now)
		rd := c.Ready()
		c.Advance(rd)
		id := rd.Trigger[0].ID
		for _, task := range tasks {
			if err := c.Step(now, Ack{Task: task, ID: id}); err != nil {
				b.Fatal(err)
			}
		}
		c.Advance(c.Ready())
		if err := c.Step(now, Persisted{ID: id}); err != nil {
			b.Fatal(err)
		}
		rd = c.Ready()
		if len(rd.Complete) != 1 {
			b.Fatalf("no completion: %+v", rd)
		}
		c.Advance(rd)
	}
}

// TestStepAckDoesNotAllocate: acks arrive once per task per checkpoint;
// accepting one (first, duplicate or late) allocates nothing.
func TestStepAckDoesNotAllocate(t *testing.T) {
	const ntasks = 1000
	tasks := make([]TaskID, ntasks)
	for i := range tasks {
		tasks[i] = TaskID(i)
	}
	c := New(Options{Interval: time.Millisecond}, tasks, 1, epoch)
	c.Tick(epoch.Add(time.Millisecond))
	c.Advance(c.Ready())
	next := 0
	allocs := testing.AllocsPerRun(ntasks-2, func() { // leaves one task: still collecting
		if err := c.Step(epoch, Ack{Task: TaskID(next), ID: 1}); err != nil {
			t.Fatal(err)
		}
		next++
	})
	if allocs != 0 {
		t.Fatalf("Step(Ack) allocates %v times", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() {
		_ = c.Step(epoch, Ack{Task: 0, ID: 1}) // duplicate
		_ = c.Step(epoch, Ack{Task: 0, ID: 0}) // before firstID: late
	})
	if allocs != 0 {
		t.Fatalf("ignored acks allocate %v times", allocs)
	}
	if s := c.Stats(); s.IgnoredDuplicateAcks != 101 || s.IgnoredLateAcks != 101 {
		t.Fatalf("counted %d duplicate and %d late acks", s.IgnoredDuplicateAcks, s.IgnoredLateAcks)
	}
}

// TestCadenceUnderEvents: ticks every 2.5 ms, read by the driver a little
// late, after events it handled with their own (later) times: here each
// checkpoint's acknowledgement, handled 10–210 µs after the time of the
// tick that follows it. Checkpoints are still triggered every 10 ms, at the
// ticks one interval apart: the schedule counts Tick times, not the clock
// the events moved (with the clock, it slipped one tick per checkpoint:
// 12.5 ms).
func TestCadenceUnderEvents(t *testing.T) {
	const tick, interval = 2500 * time.Microsecond, 10 * time.Millisecond
	c := New(Options{Interval: interval}, []TaskID{1}, 1, epoch)
	var triggers []time.Duration
	var unacked []uint64
	for i := 1; i <= 400; i++ {
		now := epoch.Add(time.Duration(i) * tick)
		// Before each tick the driver handles an event stamped just after
		// the tick's time (the ack of the newest checkpoint; after the
		// first, a duplicate that is ignored but moves the clock).
		late := time.Duration(10+i*37%200) * time.Microsecond // varies: the driver's delay does
		for _, id := range unacked {
			if err := c.Step(now.Add(late), Ack{Task: 1, ID: id}); err != nil {
				t.Fatal(err)
			}
			rd := c.Ready()
			for _, p := range rd.Persist {
				if err := c.Step(now.Add(late), Persisted{ID: p.ID}); err != nil {
					t.Fatal(err)
				}
			}
			c.Advance(rd)
			c.Advance(c.Ready())
		}
		c.Tick(now)
		rd := c.Ready()
		c.Advance(rd)
		for _, tr := range rd.Trigger {
			triggers = append(triggers, tr.At.Sub(epoch))
			unacked = append(unacked[:0], tr.ID)
		}
	}
	if len(triggers) < 90 {
		t.Fatalf("%d triggers in 1 s at a 10 ms interval: %v", len(triggers), triggers)
	}
	for i := 2; i < len(triggers); i++ {
		if d := triggers[i] - triggers[i-1]; d < interval-210*time.Microsecond || d > interval+210*time.Microsecond {
			t.Fatalf("trigger %d came %v after the previous, want %v: %v", i, d, interval, triggers[:i+1])
		}
	}
}
