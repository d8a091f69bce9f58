package align

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the scripted scenarios in testdata/. Commands:
//
//	new inputs=N mode=exactly_once|at_least_once
//	barrier ch=C id=I [to=J]   barrier I (or I..J, one per line) on channel C
//	cancel ch=C id=I
//	abandon id=I
//	end ch=C
//
// Each command prints the Decision (or the panic message of a protocol bug)
// and then the state. Regenerate with: go test ./align -run DataDriven -rewrite
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var a *Aligner
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "new" && a == nil {
				d.Fatalf(t, "%s before new", d.Cmd)
			}
			var out strings.Builder
			step := func(f func() Decision) {
				dec, msg := catch(f)
				if msg != "" {
					// The state is printed below; keep the panic line short.
					if i := strings.Index(msg, "; state: "); i >= 0 {
						msg = msg[:i]
					}
					fmt.Fprintf(&out, "panic: %s\n", msg)
					return
				}
				fmt.Fprintf(&out, "%s\n", dec)
			}
			switch d.Cmd {
			case "new":
				var inputs int
				var mode string
				d.ScanArgs(t, "inputs", &inputs)
				d.ScanArgs(t, "mode", &mode)
				m, ok := parseMode(mode)
				if !ok {
					d.Fatalf(t, "unknown mode %q", mode)
				}
				a = New(inputs, m)
			case "barrier":
				var ch int
				var id uint64
				d.ScanArgs(t, "ch", &ch)
				d.ScanArgs(t, "id", &id)
				to := id
				d.MaybeScanArgs(t, "to", &to)
				for i := id; i <= to; i++ {
					if to > id {
						fmt.Fprintf(&out, "id=%d: ", i)
					}
					step(func() Decision { return a.Barrier(ch, i) })
				}
			case "cancel":
				var ch int
				var id uint64
				d.ScanArgs(t, "ch", &ch)
				d.ScanArgs(t, "id", &id)
				step(func() Decision { return a.Cancel(ch, id) })
			case "abandon":
				var id uint64
				d.ScanArgs(t, "id", &id)
				step(func() Decision { return a.Abandon(id) })
			case "end":
				var ch int
				d.ScanArgs(t, "ch", &ch)
				step(func() Decision { return a.EndOfInput(ch) })
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			fmt.Fprintf(&out, "state: %s\n", a)
			return out.String()
		})
	})
}

func parseMode(s string) (Mode, bool) {
	for _, m := range []Mode{ExactlyOnce, AtLeastOnce} {
		if m.String() == s {
			return m, true
		}
	}
	return 0, false
}

// catch runs f and returns its Decision, or the message it panicked with.
func catch(f func() Decision) (d Decision, msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	return f(), ""
}

func TestNewPanics(t *testing.T) {
	f := func(inputs int, mode Mode, want string) {
		t.Helper()
		_, msg := catch(func() Decision { New(inputs, mode); return Decision{} })
		if !strings.Contains(msg, want) {
			t.Errorf("New(%d, %v) panic = %q, want it to contain %q", inputs, mode, msg, want)
		}
	}
	f(0, ExactlyOnce, "numInputs 0 not in [1, 65536]")
	f(-1, AtLeastOnce, "numInputs -1")
	f(MaxInputs+1, ExactlyOnce, "numInputs 65537")
	f(1, 0, "unknown mode 0")
	f(1, 3, "unknown mode 3")
	// The boundaries themselves are fine.
	New(1, ExactlyOnce)
	New(MaxInputs, AtLeastOnce)
}

// TestPanicsLeaveStateUnchanged checks that every protocol-bug panic happens
// before any mutation, so the state in the panic message is the real one.
func TestPanicsLeaveStateUnchanged(t *testing.T) {
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		a := New(3, mode)
		a.Barrier(0, 5)
		a.EndOfInput(2)
		calls := []func() Decision{
			func() Decision { return a.Barrier(3, 6) },
			func() Decision { return a.Barrier(-1, 6) },
			func() Decision { return a.Barrier(1, 0) },
			func() Decision { return a.Barrier(2, 6) },
			func() Decision { return a.Cancel(2, 6) },
			func() Decision { return a.Cancel(1, 0) },
			func() Decision { return a.Cancel(7, 1) },
			func() Decision { return a.EndOfInput(2) },
			func() Decision { return a.EndOfInput(3) },
			func() Decision { a.Blocked(3); return Decision{} },
			func() Decision { a.Ended(-1); return Decision{} },
			func() Decision { return a.Abandon(0) },
		}
		if mode == ExactlyOnce {
			calls = append(calls,
				func() Decision { return a.Barrier(0, 5) },
				func() Decision { return a.Barrier(0, 6) },
				func() Decision { return a.Cancel(0, 5) },
				func() Decision { return a.EndOfInput(0) },
			)
		} else {
			calls = append(calls,
				func() Decision { return a.Barrier(0, 5) },
				func() Decision { return a.Barrier(0, 4) },
			)
		}
		for i, f := range calls {
			before := a.String()
			_, msg := catch(f)
			if msg == "" {
				t.Errorf("%v: call %d did not panic", mode, i)
			}
			if !strings.HasPrefix(msg, "align: ") {
				t.Errorf("%v: call %d panic %q lacks the package prefix", mode, i, msg)
			}
			if after := a.String(); after != before {
				t.Errorf("%v: call %d changed state on panic:\nbefore %s\nafter  %s", mode, i, before, after)
			}
		}
	}
}

func TestDecisionString(t *testing.T) {
	f := func(d Decision, want string) {
		t.Helper()
		if got := d.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", d, got, want)
		}
		if none := want == "none"; d.IsNone() != none {
			t.Errorf("%#v.IsNone() = %v, want %v", d, d.IsNone(), none)
		}
	}
	f(Decision{Block: -1}, "none")
	f(Decision{Block: 0}, "block=0")
	f(Decision{Abort: 4, AbortCause: CauseSubsumed, Block: 2}, "abort=4(subsumed) block=2")
	f(Decision{Block: -1, Snapshot: 5, UnblockAll: true}, "snapshot=5 unblock_all")
	f(Decision{Abort: 3, AbortCause: CauseCancelled, Block: -1, Snapshot: 4, UnblockAll: true}, "abort=3(cancelled) snapshot=4 unblock_all")
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ExactlyOnce: "exactly_once", AtLeastOnce: "at_least_once", 0: "Mode(0)", 9: "Mode(9)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", m, got, want)
		}
	}
}

func TestAbortCauseString(t *testing.T) {
	for c, want := range map[AbortCause]string{CauseNone: "none", CauseSubsumed: "subsumed", CauseCancelled: "cancelled",
		CauseEvicted: "evicted", CauseAbandoned: "abandoned", 9: "AbortCause(9)"} {
		if got := c.String(); got != want {
			t.Errorf("AbortCause(%d).String() = %q, want %q", c, got, want)
		}
	}
}

func TestStringRanges(t *testing.T) {
	a := New(130, ExactlyOnce)
	for _, ch := range []int{0, 1, 2, 3, 5, 63, 64, 65, 129} {
		a.Barrier(ch, 1)
	}
	a.EndOfInput(7)
	want := "exactly_once inputs=130 done=0 aligning=1 blocked=[0-3 5 63-65 129] ended=[7]"
	if got := a.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

// TestManyInputs runs a full alignment across several bitset words.
func TestManyInputs(t *testing.T) {
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		const n = 200
		a := New(n, mode)
		for id := uint64(1); id <= 3; id++ {
			for ch := 0; ch < n; ch++ {
				d := a.Barrier(ch, id)
				if ch < n-1 {
					wantBlock := -1
					if mode == ExactlyOnce {
						wantBlock = ch
					}
					if d != (Decision{Block: wantBlock}) {
						t.Fatalf("%v: barrier %d on %d: %v", mode, id, ch, d)
					}
					if a.Blocked(ch) != (mode == ExactlyOnce) {
						t.Fatalf("%v: Blocked(%d) = %v", mode, ch, a.Blocked(ch))
					}
					continue
				}
				want := Decision{Block: -1, Snapshot: id, UnblockAll: mode == ExactlyOnce}
				if d != want {
					t.Fatalf("%v: last barrier %d: %v, want %v", mode, id, d, want)
				}
			}
			for ch := 0; ch < n; ch++ {
				if a.Blocked(ch) {
					t.Fatalf("%v: channel %d still blocked after snapshot %d", mode, ch, id)
				}
			}
		}
		for ch := 0; ch < n; ch++ {
			if d := a.EndOfInput(ch); !d.IsNone() {
				t.Fatalf("%v: end %d: %v", mode, ch, d)
			}
		}
		if !a.AllEnded() || a.Pending() != 0 || a.LastFinished() != 3 {
			t.Fatalf("%v: final state %s", mode, a)
		}
	}
}

func TestAccessors(t *testing.T) {
	a := New(2, AtLeastOnce)
	if a.Mode() != AtLeastOnce || a.NumInputs() != 2 {
		t.Fatalf("Mode/NumInputs = %v/%d", a.Mode(), a.NumInputs())
	}
	if id, ok := a.Aligning(); ok || id != 0 {
		t.Fatalf("Aligning on a fresh aligner = %d, %v", id, ok)
	}
	a.Barrier(0, 4)
	a.Barrier(0, 6)
	if id, ok := a.Aligning(); !ok || id != 4 || a.Pending() != 2 {
		t.Fatalf("Aligning = %d, %v; Pending = %d; want oldest 4 of 2", id, ok, a.Pending())
	}
	if a.Ended(1) || a.AllEnded() {
		t.Fatal("nothing ended yet")
	}
	a.EndOfInput(1)
	if !a.Ended(1) || a.AllEnded() {
		t.Fatalf("after end 1: %s", a)
	}
}
