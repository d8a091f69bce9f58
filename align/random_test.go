package align

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// The randomized consistency test simulates a task with n input channels.
// Each channel carries what an upstream task would send: records, then for
// each checkpoint id 1..K in order either its barrier, a cancellation marker
// instead (the upstream abandoned it), nothing (the upstream skipped it), or
// the barrier followed later by a cancellation marker; some channels end
// early; every channel ends with end-of-input. Some runs also abandon random
// checkpoints from the control path (Abandon). A random scheduler reads one
// element at a time from a channel that is not blocked, feeds control
// elements to the Aligner, and applies each Decision in the documented order
// to its own blocked set. The consumer's state is the set of records it has
// processed; since a channel's records are read in order, the set is the
// prefix of each channel's records it has read, kept as a count per channel.
//
// Checked after every step:
//   - the consumer's blocked set equals Aligner.Blocked for every channel;
//   - Block is only ever the channel just read, in ExactlyOnce, after a
//     barrier; UnblockAll only in ExactlyOnce;
//   - Abort and Snapshot ids strictly increase; Abort names an id seen, for
//     the right cause;
//   - Snapshot n only when n is complete (every channel delivered barrier n,
//     or ended before delivering any barrier >= n), and then the state holds
//     exactly (ExactlyOnce) or at least (AtLeastOnce) the records that
//     precede barrier n on each channel;
//   - no completion is missed: no id above the highest reported one is
//     complete;
//   - the scheduler never finds every unfinished channel blocked (deadlock);
//   - at the end every channel has ended and nothing is in progress.

// chooser supplies the simulation's random choices.
type chooser interface {
	// intn returns a value in [0, n); n > 0.
	intn(n int) int
}

type rngChooser struct{ r *rand.Rand }

func (c rngChooser) intn(n int) int { return c.r.IntN(n) }

// byteChooser derives choices from fuzz input; when it runs out it returns
// 0, which still yields a valid, terminating schedule.
type byteChooser struct {
	data []byte
	i    int
}

func (c *byteChooser) intn(n int) int {
	if c.i >= len(c.data) {
		return 0
	}
	v := int(c.data[c.i]) % n
	c.i++
	return v
}

type elemKind uint8

const (
	kRecord elemKind = iota
	kBarrier
	kCancel
	kEnd
	kAbandon // not in a channel: the control path abandons a checkpoint
)

type elem struct {
	kind elemKind
	id   uint64 // checkpoint id (barrier, cancel) or record sequence number
}

type schedule struct {
	mode    Mode
	maxID   uint64
	chans   [][]elem
	greedy  bool // the scheduler prefers the lowest readable channel (skew)
	abandon bool // the control path abandons random checkpoints now and then
	summary string
}

// genSchedule builds a random schedule of n channels and checkpoints 1..K.
func genSchedule(c chooser, mode Mode, n int, maxID uint64) schedule {
	faults := c.intn(3) != 0 // a third of the schedules are fault-free
	s := schedule{mode: mode, maxID: maxID, chans: make([][]elem, n), greedy: c.intn(4) == 0,
		abandon: faults && c.intn(3) == 0}
	for ch := range s.chans {
		var es []elem
		seq := uint64(0)
		records := func() {
			for r := c.intn(4); r > 0; r-- {
				es = append(es, elem{kRecord, seq})
				seq++
			}
		}
		endAfter := maxID
		if c.intn(4) == 0 {
			endAfter = uint64(c.intn(int(maxID) + 1))
		}
		for id := uint64(1); id <= endAfter; id++ {
			records()
			choice := 10
			if faults {
				choice = c.intn(20)
			}
			switch choice {
			case 0: // the upstream abandoned id
				es = append(es, elem{kCancel, id})
			case 1: // the upstream skipped id
			case 2: // the upstream forwarded id, then learned it was aborted
				es = append(es, elem{kBarrier, id})
				records()
				es = append(es, elem{kCancel, id})
			default:
				es = append(es, elem{kBarrier, id})
			}
		}
		records()
		es = append(es, elem{kEnd, 0})
		s.chans[ch] = es
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mode=%v greedy=%v abandon=%v\n", mode, s.greedy, s.abandon)
	for ch, es := range s.chans {
		fmt.Fprintf(&b, "  ch%d:", ch)
		for _, e := range es {
			switch e.kind {
			case kRecord:
				b.WriteString(" r")
			case kBarrier:
				fmt.Fprintf(&b, " B%d", e.id)
			case kCancel:
				fmt.Fprintf(&b, " C%d", e.id)
			case kEnd:
				b.WriteString(" END")
			}
		}
		b.WriteByte('\n')
	}
	s.summary = b.String()
	return s
}

// simulate runs schedule s under the scheduler's choices and returns the
// first violated property, or "" if none.
func simulate(s schedule, sched chooser) string {
	return simulateWith(s, sched, s.mode)
}

// simulateWith checks s.mode's properties against an Aligner in alignerMode
// (different only to prove the checker can fail).
func simulateWith(s schedule, sched chooser, alignerMode Mode) string {
	n := len(s.chans)
	a := New(n, alignerMode)
	pos := make([]int, n)
	blocked := make([]bool, n)
	recsRead := make([]int, n)
	maxBarrier := make([]uint64, n) // highest barrier read per channel
	ended := make([]bool, n)
	delivered := make([][]bool, n) // delivered[ch][id]
	recsBefore := make([][]int, n) // records before barrier id on ch
	totalRecs := make([]int, n)
	for ch, es := range s.chans {
		delivered[ch] = make([]bool, s.maxID+1)
		recsBefore[ch] = make([]int, s.maxID+1)
		recs := 0
		for _, e := range es {
			switch e.kind {
			case kRecord:
				recs++
			case kBarrier:
				recsBefore[ch][e.id] = recs
			}
		}
		totalRecs[ch] = recs
	}
	seen := make([]bool, s.maxID+1) // a barrier or cancel for id was read
	var reported uint64             // highest Abort or Snapshot id so far
	// covers reports whether channel ch counts as having delivered barrier id.
	covers := func(ch int, id uint64) bool {
		return delivered[ch][id] || (ended[ch] && maxBarrier[ch] < id)
	}
	complete := func(id uint64) bool {
		any := false
		for ch := 0; ch < n; ch++ {
			if !covers(ch, id) {
				return false
			}
			any = any || delivered[ch][id]
		}
		return any
	}
	readable := make([]int, 0, n)
	abandons := 0
	for step := 0; ; step++ {
		readable = readable[:0]
		unfinished := 0
		for ch := 0; ch < n; ch++ {
			if pos[ch] < len(s.chans[ch]) {
				unfinished++
				if !blocked[ch] {
					readable = append(readable, ch)
				}
			}
		}
		if unfinished == 0 {
			break
		}
		if len(readable) == 0 {
			return fmt.Sprintf("step %d: deadlock: every unfinished channel is blocked; aligner: %s", step, a)
		}
		var d Decision
		var what string
		var e elem
		ch := -1
		// A non-zero choice, and a bounded number of abandons, so that an
		// exhausted byteChooser (always 0) still consumes the channels.
		if s.abandon && abandons < 2*int(s.maxID) && sched.intn(12) == 11 {
			abandons++
			e = elem{kAbandon, 1 + uint64(sched.intn(int(s.maxID)))}
		} else {
			ch = readable[0]
			if !s.greedy || sched.intn(8) == 0 {
				ch = readable[sched.intn(len(readable))]
			}
			e = s.chans[ch][pos[ch]]
			pos[ch]++
		}
		switch e.kind {
		case kAbandon:
			what = fmt.Sprintf("abandon %d", e.id)
			d = a.Abandon(e.id)
			if d.Abort != 0 {
				seen[e.id] = true
			}
		case kRecord:
			if int(e.id) != recsRead[ch] {
				return fmt.Sprintf("step %d: record %d on ch%d read out of order", step, e.id, ch)
			}
			recsRead[ch]++
			continue
		case kBarrier:
			what = fmt.Sprintf("barrier %d on ch%d", e.id, ch)
			delivered[ch][e.id] = true
			maxBarrier[ch] = e.id
			seen[e.id] = true
			d = a.Barrier(ch, e.id)
		case kCancel:
			what = fmt.Sprintf("cancel %d on ch%d", e.id, ch)
			seen[e.id] = true
			d = a.Cancel(ch, e.id)
		case kEnd:
			what = fmt.Sprintf("end on ch%d", ch)
			ended[ch] = true
			d = a.EndOfInput(ch)
		}
		fail := func(format string, args ...any) string {
			return fmt.Sprintf("step %d: %s -> %v: %s; aligner: %s", step, what, d, fmt.Sprintf(format, args...), a)
		}
		// Apply the Decision in the documented order.
		if d.Abort != 0 {
			if d.Abort <= reported {
				return fail("abort %d not above last reported %d", d.Abort, reported)
			}
			if d.Abort > s.maxID || !seen[d.Abort] {
				return fail("abort %d of a checkpoint never seen", d.Abort)
			}
			wantCause := map[elemKind]AbortCause{kBarrier: CauseSubsumed, kCancel: CauseCancelled, kAbandon: CauseAbandoned}[e.kind]
			if e.kind == kBarrier && s.mode == AtLeastOnce {
				wantCause = CauseEvicted
			}
			if d.AbortCause != wantCause {
				return fail("abort cause %v, want %v", d.AbortCause, wantCause)
			}
			if (e.kind == kCancel || e.kind == kAbandon) && d.Abort != e.id {
				return fail("abort of %d after a cancellation of %d", d.Abort, e.id)
			}
			reported = d.Abort
			clear(blocked) // nothing stays blocked for an abandoned checkpoint
		}
		if d.Block >= 0 {
			if s.mode != ExactlyOnce || e.kind != kBarrier || d.Block != ch {
				return fail("unexpected block")
			}
			if blocked[ch] {
				return fail("block of an already blocked channel")
			}
			blocked[ch] = true
		}
		if d.Snapshot != 0 {
			id := d.Snapshot
			if id <= reported {
				return fail("snapshot %d not above last reported %d", id, reported)
			}
			reported = id
			if id > s.maxID || !complete(id) {
				return fail("snapshot %d of an incomplete checkpoint", id)
			}
			for c := 0; c < n; c++ {
				want := totalRecs[c] // an ended channel: all its records
				if delivered[c][id] {
					want = recsBefore[c][id]
				}
				got := recsRead[c]
				if s.mode == ExactlyOnce && got != want {
					return fail("snapshot %d holds %d records of ch%d, want exactly %d", id, got, c, want)
				}
				if got < want {
					return fail("snapshot %d holds %d records of ch%d, want at least %d", id, got, c, want)
				}
			}
		}
		if d.UnblockAll {
			if s.mode != ExactlyOnce {
				return fail("unblock_all in %v", s.mode)
			}
			clear(blocked)
		}
		for c := 0; c < n; c++ {
			if blocked[c] != a.Blocked(c) {
				return fail("consumer has ch%d blocked=%v, aligner says %v", c, blocked[c], a.Blocked(c))
			}
			if ended[c] != a.Ended(c) {
				return fail("ch%d ended=%v, aligner says %v", c, ended[c], a.Ended(c))
			}
		}
		for id := reported + 1; id <= s.maxID; id++ {
			if complete(id) {
				return fail("checkpoint %d is complete but was not reported (last reported %d)", id, reported)
			}
		}
		if a.LastFinished() < reported {
			return fail("LastFinished %d below last reported %d", a.LastFinished(), reported)
		}
	}
	// The schedule's length bounds the loop: every step consumes an element.
	if !a.AllEnded() || a.Pending() != 0 {
		return fmt.Sprintf("end: not all ended or still pending: %s", a)
	}
	if d := a.Abandon(s.maxID + 1); !d.IsNone() {
		return fmt.Sprintf("end: Abandon after every channel ended: %v", d)
	}
	for c := 0; c < n; c++ {
		if recsRead[c] != totalRecs[c] {
			return fmt.Sprintf("end: ch%d: read %d records", c, recsRead[c])
		}
	}
	return ""
}

func TestRandomConsistency(t *testing.T) {
	seeds := 4000
	if testing.Short() {
		seeds = 400
	}
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		for seed := 0; seed < seeds; seed++ {
			r := rngChooser{rand.New(rand.NewPCG(uint64(seed), uint64(mode)))}
			n := 1 + r.intn(6)
			maxID := uint64(1 + r.intn(8))
			if mode == AtLeastOnce && r.intn(10) == 0 {
				// Enough checkpoints to evict under skew.
				maxID = MaxPendingCheckpoints + 4
			}
			s := genSchedule(r, mode, n, maxID)
			if msg := simulate(s, r); msg != "" {
				t.Fatalf("seed %d: %s\nschedule %s", seed, msg, s.summary)
			}
		}
	}
}

// TestRandomManyInputs runs the simulation across several bitset words.
func TestRandomManyInputs(t *testing.T) {
	for _, mode := range []Mode{ExactlyOnce, AtLeastOnce} {
		for seed := 0; seed < 10; seed++ {
			r := rngChooser{rand.New(rand.NewPCG(uint64(seed), 100+uint64(mode)))}
			s := genSchedule(r, mode, 64+r.intn(80), 4)
			if msg := simulate(s, r); msg != "" {
				t.Fatalf("seed %d: %s\nschedule %s", seed, msg, s.summary)
			}
		}
	}
}

// TestSimulatorCatchesBugs makes sure the checker can fail: a consumer that
// ignores Block must be caught violating exactly-once, and a schedule fed to
// the wrong mode's checker must be caught too.
func TestSimulatorCatchesBugs(t *testing.T) {
	// ch0: B1 r r END; ch1: r B1 END. A consumer that reads ch0 past B1 before
	// ch1 delivers B1 includes records that follow barrier 1 in snapshot 1.
	s := schedule{
		mode:  AtLeastOnce, // never blocks: the ExactlyOnce check below must fail
		maxID: 1,
		chans: [][]elem{
			{{kBarrier, 1}, {kRecord, 0}, {kRecord, 1}, {kEnd, 0}},
			{{kRecord, 0}, {kBarrier, 1}, {kEnd, 0}},
		},
	}
	first := &byteChooser{data: []byte{0, 0, 0}} // always the first readable channel
	if msg := simulate(s, first); msg != "" {
		t.Fatalf("at-least-once run failed: %s", msg)
	}
	// Same reads checked as exactly-once: simulate with an AtLeastOnce
	// aligner but ExactlyOnce expectations.
	msg := simulateMismatched(s, first)
	if !strings.Contains(msg, "want exactly 0") {
		t.Fatalf("exactly-once checker did not catch an unaligned snapshot: %q", msg)
	}
}

// simulateMismatched runs an AtLeastOnce aligner under the ExactlyOnce
// checker by swapping the mode after construction.
func simulateMismatched(s schedule, sched chooser) string {
	s.mode = ExactlyOnce
	return simulateWith(s, sched, AtLeastOnce)
}

func FuzzAlign(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{1, 5, 7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte("the quick brown fox jumps over the lazy dog; barriers align"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &byteChooser{data: data}
		mode := ExactlyOnce
		if c.intn(2) == 1 {
			mode = AtLeastOnce
		}
		n := 1 + c.intn(5)
		maxID := uint64(c.intn(7))
		if maxID == 0 {
			maxID = 1
		}
		s := genSchedule(c, mode, n, maxID)
		if msg := simulate(s, c); msg != "" {
			t.Fatalf("%s\nschedule %s", msg, s.summary)
		}
	})
}
