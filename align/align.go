package align

import (
	"fmt"
	"strconv"
	"strings"
)

// Mode selects how the Aligner treats a channel that has delivered a barrier.
type Mode uint8

const (
	// ExactlyOnce aligns: a channel that delivered barrier n is blocked until
	// barrier n has arrived on every live channel (or n is abandoned). One
	// checkpoint is aligned at a time; a newer barrier abandons the older one.
	ExactlyOnce Mode = iota + 1
	// AtLeastOnce tracks: no channel is ever blocked, and up to
	// MaxPendingCheckpoints checkpoints are tracked at once, each completing
	// when its barrier has arrived on every live channel.
	AtLeastOnce
)

// String returns the name used in job specs and golden files:
// "exactly_once" or "at_least_once".
func (m Mode) String() string {
	switch m {
	case ExactlyOnce:
		return "exactly_once"
	case AtLeastOnce:
		return "at_least_once"
	default:
		return "Mode(" + strconv.Itoa(int(m)) + ")"
	}
}

// MaxInputs is the largest number of input channels one Aligner accepts.
// It bounds the memory of an Aligner (a few bits per channel per tracked
// checkpoint) and is far above any parallelism a single host runs.
const MaxInputs = 1 << 16

// MaxPendingCheckpoints is how many checkpoints an AtLeastOnce Aligner tracks
// at once (Flink's CheckpointBarrierTracker tracks 50). When a barrier for a
// newer checkpoint arrives while this many are pending, the oldest pending
// one is abandoned and reported as Decision.Abort. ExactlyOnce tracks one.
const MaxPendingCheckpoints = 32

// Decision is what the caller must do after feeding one in-band element to
// the Aligner. The caller applies the fields in this order:
//
//  1. Abort: if non-zero, checkpoint Abort is abandoned at this task (for
//     AbortCause): decline it to the coordinator, forward a cancellation
//     marker for it on every output, and resume reading every channel
//     (nothing stays blocked for an abandoned checkpoint; in AtLeastOnce
//     nothing is ever blocked).
//  2. Block: if >= 0, stop reading channel Block (ExactlyOnce only).
//  3. Snapshot: if non-zero, barrier Snapshot has arrived on every live
//     channel: take the snapshot now, then forward barrier Snapshot on every
//     output.
//  4. UnblockAll: resume reading every channel.
//
// After the caller has applied a Decision this way, the channels it does not
// read are exactly those for which Aligner.Blocked reports true; a caller may
// also just ask Blocked before each read and use Block/UnblockAll only as
// wake-up hints.
//
// Abort and Block are both set only when a barrier for a newer checkpoint
// abandons the one being aligned: every channel blocked for the old one is
// resumed (step 1) and the channel that delivered the new barrier is blocked
// (step 2). UnblockAll is set, in ExactlyOnce, whenever some channel was
// blocked before the event and none is after it; it is never set in
// AtLeastOnce.
//
// Abort and Snapshot ids are reported in strictly increasing order over the
// lifetime of an Aligner, each id at most once, and never both for the same
// id: once an id has been reported, the Aligner never reports that id or a
// smaller one again. A checkpoint that was in progress here and has a smaller
// id than a reported one, but was not itself reported, has been abandoned
// silently (it was subsumed, as in Flink).
type Decision struct {
	// Abort, when non-zero, is a checkpoint abandoned here (applied 1st).
	Abort uint64
	// AbortCause says why Abort was abandoned; CauseNone when Abort is 0.
	AbortCause AbortCause
	// Block is a channel to stop reading, or -1 for none (applied 2nd).
	Block int
	// Snapshot, when non-zero, is the checkpoint to snapshot and forward now
	// (applied 3rd).
	Snapshot uint64
	// UnblockAll says to resume reading every channel (applied 4th).
	UnblockAll bool
}

// AbortCause says why a checkpoint was abandoned, so that the engine can
// decline it with the right reason (Flink, for one, does not count a
// subsumed checkpoint as a failure).
type AbortCause uint8

const (
	// CauseNone: nothing was abandoned.
	CauseNone AbortCause = iota
	// CauseSubsumed: a barrier for a newer checkpoint arrived while this one
	// was being aligned (ExactlyOnce).
	CauseSubsumed
	// CauseCancelled: a cancellation marker for it (or for a newer id)
	// arrived on an input channel.
	CauseCancelled
	// CauseEvicted: MaxPendingCheckpoints were in progress and a newer one
	// started (AtLeastOnce).
	CauseEvicted
	// CauseAbandoned: the caller abandoned it with Aligner.Abandon.
	CauseAbandoned
)

// String returns the cause's name as printed in golden files: "subsumed",
// "cancelled", "evicted", "abandoned" ("none" for CauseNone).
func (c AbortCause) String() string {
	switch c {
	case CauseNone:
		return "none"
	case CauseSubsumed:
		return "subsumed"
	case CauseCancelled:
		return "cancelled"
	case CauseEvicted:
		return "evicted"
	case CauseAbandoned:
		return "abandoned"
	default:
		return "AbortCause(" + strconv.Itoa(int(c)) + ")"
	}
}

// IsNone reports whether the Decision asks for nothing.
func (d Decision) IsNone() bool {
	return d.Abort == 0 && d.Block < 0 && d.Snapshot == 0 && !d.UnblockAll
}

// String renders the fields that ask for something, in application order,
// e.g. "abort=4(subsumed) block=1" or "snapshot=5 unblock_all"; "none" if
// nothing.
func (d Decision) String() string {
	if d.IsNone() {
		return "none"
	}
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
	}
	if d.Abort != 0 {
		sep()
		b.WriteString("abort=")
		b.WriteString(strconv.FormatUint(d.Abort, 10))
		b.WriteByte('(')
		b.WriteString(d.AbortCause.String())
		b.WriteByte(')')
	}
	if d.Block >= 0 {
		sep()
		b.WriteString("block=")
		b.WriteString(strconv.Itoa(d.Block))
	}
	if d.Snapshot != 0 {
		sep()
		b.WriteString("snapshot=")
		b.WriteString(strconv.FormatUint(d.Snapshot, 10))
	}
	if d.UnblockAll {
		sep()
		b.WriteString("unblock_all")
	}
	return b.String()
}

// pending is one checkpoint in progress.
type pending struct {
	id uint64
	// covered counts the channels that delivered barrier id, or ended
	// before delivering any barrier above id. The checkpoint is complete
	// when it equals the number of inputs.
	covered int
}

// Aligner is the barrier-alignment state machine of one task. It is not safe
// for concurrent use; one task goroutine owns it. See the package comment for
// the protocol.
type Aligner struct {
	mode      Mode
	numInputs int
	words     int // uint64 words per channel bitset

	numEnded int
	ended    []uint64 // bitset: channels that delivered end-of-input

	// lastBarrier[ch] is the highest barrier id channel ch has delivered
	// (0 if none): barriers on one channel must strictly increase.
	lastBarrier []uint64

	// done is the highest id this Aligner has finished: reported as Snapshot
	// or Abort, or remembered as cancelled. Every id <= done is stale.
	done uint64

	// Checkpoints in progress, ascending by id, all > done, held in a ring of
	// physical slots: logical entry i lives in slot (head+i)%len(pend).
	// ExactlyOnce has one slot, AtLeastOnce MaxPendingCheckpoints.
	pend []pending
	head int
	size int
	// arrived holds one bitset per physical slot: the live channels that
	// delivered that slot's barrier. The bitset of a free slot is all zero.
	// In ExactlyOnce the bitset of slot 0 is exactly the blocked set.
	arrived []uint64
}

// New returns an Aligner for a task with numInputs input channels, numbered
// 0 to numInputs-1. It panics if numInputs is not in [1, MaxInputs] or mode
// is not ExactlyOnce or AtLeastOnce: both are bugs in the caller.
func New(numInputs int, mode Mode) *Aligner {
	if numInputs < 1 || numInputs > MaxInputs {
		panic(fmt.Sprintf("align: New: numInputs %d not in [1, %d]", numInputs, MaxInputs))
	}
	slots := 0
	switch mode {
	case ExactlyOnce:
		slots = 1
	case AtLeastOnce:
		slots = MaxPendingCheckpoints
	default:
		panic(fmt.Sprintf("align: New: unknown mode %d", uint8(mode)))
	}
	words := (numInputs + 63) / 64
	return &Aligner{
		mode:        mode,
		numInputs:   numInputs,
		words:       words,
		ended:       make([]uint64, words),
		lastBarrier: make([]uint64, numInputs),
		pend:        make([]pending, slots),
		arrived:     make([]uint64, slots*words),
	}
}

// Mode returns the mode the Aligner was created with.
func (a *Aligner) Mode() Mode { return a.mode }

// NumInputs returns the number of input channels.
func (a *Aligner) NumInputs() int { return a.numInputs }

// Blocked reports whether channel ch must not be read now. It is only ever
// true in ExactlyOnce, for a channel that delivered the barrier of the
// checkpoint being aligned.
func (a *Aligner) Blocked(ch int) bool {
	if uint(ch) >= uint(a.numInputs) {
		a.badChannel("Blocked", ch)
	}
	// In AtLeastOnce the arrived bitset of slot 0 is not a blocked set.
	return a.mode == ExactlyOnce && a.arrived[ch>>6]&(1<<(uint(ch)&63)) != 0
}

// Aligning returns the checkpoint in progress, if any. With several in
// progress (AtLeastOnce) it returns the oldest, which is the next that can
// complete.
func (a *Aligner) Aligning() (id uint64, ok bool) {
	if a.size == 0 {
		return 0, false
	}
	return a.pend[a.head].id, true
}

// Pending returns the number of checkpoints in progress: 0 or 1 in
// ExactlyOnce, up to MaxPendingCheckpoints in AtLeastOnce.
func (a *Aligner) Pending() int { return a.size }

// LastFinished returns the highest checkpoint id finished here (snapshotted,
// abandoned or cancelled), 0 if none. Barriers and cancellation markers for
// ids up to it are stale.
func (a *Aligner) LastFinished() uint64 { return a.done }

// Ended reports whether channel ch has delivered end-of-input.
func (a *Aligner) Ended(ch int) bool {
	if uint(ch) >= uint(a.numInputs) {
		a.badChannel("Ended", ch)
	}
	return hasBit(a.ended, ch)
}

// AllEnded reports whether every channel has delivered end-of-input. No
// barrier, cancellation marker or end-of-input can arrive after that.
func (a *Aligner) AllEnded() bool { return a.numEnded == a.numInputs }

// Barrier feeds barrier id, read from channel ch.
//
// It panics, without changing state, on protocol bugs: ch out of range, id 0,
// ch blocked or ended, or id not greater than the previous barrier on ch
// (a duplicate or a reordering).
func (a *Aligner) Barrier(ch int, id uint64) Decision {
	a.checkElement("barrier", ch, id)
	if last := a.lastBarrier[ch]; id <= last {
		if id == last {
			panic(fmt.Sprintf("align: duplicate barrier %d on channel %d; state: %s", id, ch, a))
		}
		panic(fmt.Sprintf("align: barrier %d on channel %d after barrier %d: barriers on a channel must increase; state: %s",
			id, ch, last, a))
	}
	a.lastBarrier[ch] = id

	d := Decision{Block: -1}
	if id <= a.done {
		return d // stale: already snapshotted, abandoned or cancelled here
	}
	wasBlocked := a.mode == ExactlyOnce && a.size > 0
	i, found := a.find(id)
	if !found {
		if a.size > 0 && id < a.pend[a.slot(a.size-1)].id {
			// Older than a checkpoint already in progress, and never seen:
			// another channel has moved past it, so it can never complete.
			return d
		}
		if a.size == len(a.pend) {
			// ExactlyOnce: the newer barrier abandons the one being aligned.
			// AtLeastOnce: the oldest pending checkpoint is evicted.
			d.Abort, d.AbortCause = a.pend[a.head].id, CauseSubsumed
			if a.mode == AtLeastOnce {
				d.AbortCause = CauseEvicted
			}
			a.done = d.Abort
			a.dropFirst(1)
		}
		i = a.size
		a.pend[a.slot(i)] = pending{id: id, covered: a.numEnded}
		a.size++
	}
	s := a.slot(i)
	setBit(a.slotBits(s), ch)
	a.pend[s].covered++
	if a.pend[s].covered == a.numInputs {
		d.Snapshot = id
		a.done = id
		a.dropFirst(i + 1)
	} else if a.mode == ExactlyOnce {
		d.Block = ch
	}
	d.UnblockAll = wasBlocked && a.size == 0
	if invariants {
		a.checkInvariants()
	}
	return d
}

// Cancel feeds a cancellation marker for checkpoint id, read from channel ch
// (Flink's CancelCheckpointMarker: an upstream task abandoned id).
//
//   - id in progress here: Abort id (and, in AtLeastOnce, older pending
//     checkpoints are dropped silently).
//   - id newer than anything seen here: Abort id; whatever was in progress is
//     dropped silently, and later barriers for id are stale.
//   - otherwise (id finished here, or older than a checkpoint in progress
//     and never seen): nothing.
//
// It panics, without changing state, on protocol bugs: ch out of range, id 0,
// ch blocked or ended.
func (a *Aligner) Cancel(ch int, id uint64) Decision {
	a.checkElement("cancellation marker", ch, id)
	return a.cancel(id, CauseCancelled)
}

// Abandon abandons checkpoint id on the control path, not from a channel:
// the coordinator aborted it, or the task gave up on an alignment that took
// too long. It acts exactly like Cancel (Abort id if id is in progress or
// newer than anything seen, nothing if it is stale) but reports
// CauseAbandoned, and it may be called at any time, whatever the channels'
// state. Once every channel has ended it does nothing: the task has
// forwarded end-of-input, so no cancellation marker may follow, and no
// checkpoint can be in progress. It panics if id is 0.
func (a *Aligner) Abandon(id uint64) Decision {
	if id == 0 {
		panic("align: Abandon of checkpoint id 0: ids are positive")
	}
	if a.AllEnded() {
		return Decision{Block: -1}
	}
	return a.cancel(id, CauseAbandoned)
}

func (a *Aligner) cancel(id uint64, cause AbortCause) Decision {
	d := Decision{Block: -1}
	if id <= a.done {
		return d
	}
	wasBlocked := a.mode == ExactlyOnce && a.size > 0
	if i, found := a.find(id); found {
		a.dropFirst(i + 1)
	} else if a.size == 0 || id > a.pend[a.slot(a.size-1)].id {
		a.dropFirst(a.size)
	} else {
		return d
	}
	d.Abort, d.AbortCause = id, cause
	a.done = id
	d.UnblockAll = wasBlocked && a.size == 0
	if invariants {
		a.checkInvariants()
	}
	return d
}

// EndOfInput feeds end-of-input read from channel ch. From now on ch counts as
// having delivered every barrier with an id above the last barrier it
// delivered, so it may complete checkpoints in progress; if several complete,
// the newest is reported as Snapshot and the older ones are dropped silently
// (AtLeastOnce only: ExactlyOnce has one in progress). A checkpoint that ch
// skipped (ch delivered a later barrier without it) stays incomplete.
//
// It panics, without changing state, if ch is out of range, blocked or has
// already ended.
func (a *Aligner) EndOfInput(ch int) Decision {
	if uint(ch) >= uint(a.numInputs) {
		a.badChannel("EndOfInput", ch)
	}
	if hasBit(a.ended, ch) {
		panic(fmt.Sprintf("align: second end-of-input on channel %d; state: %s", ch, a))
	}
	if a.Blocked(ch) {
		panic(fmt.Sprintf("align: end-of-input read from blocked channel %d; state: %s", ch, a))
	}
	setBit(a.ended, ch)
	a.numEnded++

	d := Decision{Block: -1}
	wasBlocked := a.mode == ExactlyOnce && a.size > 0
	complete := -1
	for i := 0; i < a.size; i++ {
		s := a.slot(i)
		// ch now covers every checkpoint above its last barrier. One it
		// delivered is already counted; one it skipped (a later barrier came
		// first) it never covers.
		if a.pend[s].id > a.lastBarrier[ch] {
			a.pend[s].covered++
		}
		if a.pend[s].covered == a.numInputs {
			complete = i
		}
	}
	if complete >= 0 {
		d.Snapshot = a.pend[a.slot(complete)].id
		a.done = d.Snapshot
		a.dropFirst(complete + 1)
	}
	d.UnblockAll = wasBlocked && a.size == 0
	if invariants {
		a.checkInvariants()
	}
	return d
}

// String returns a compact dump of the state, for golden tests and panic
// messages, e.g.
//
//	exactly_once inputs=3 done=4 aligning=5 blocked=[0 2] ended=[1]
//	at_least_once inputs=3 done=0 pending=[5:[0] 6:[0 2]] ended=[]
//
// Channel lists show runs of three or more as ranges ("0-5 7 8").
func (a *Aligner) String() string {
	var b strings.Builder
	b.WriteString(a.mode.String())
	b.WriteString(" inputs=")
	b.WriteString(strconv.Itoa(a.numInputs))
	b.WriteString(" done=")
	b.WriteString(strconv.FormatUint(a.done, 10))
	if a.mode == ExactlyOnce {
		b.WriteString(" aligning=")
		if a.size == 0 {
			b.WriteString("none")
		} else {
			b.WriteString(strconv.FormatUint(a.pend[a.head].id, 10))
		}
		b.WriteString(" blocked=")
		a.writeSet(&b, a.slotBits(0))
	} else {
		b.WriteString(" pending=[")
		for i := 0; i < a.size; i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			s := a.slot(i)
			b.WriteString(strconv.FormatUint(a.pend[s].id, 10))
			b.WriteByte(':')
			a.writeSet(&b, a.slotBits(s))
		}
		b.WriteByte(']')
	}
	b.WriteString(" ended=")
	a.writeSet(&b, a.ended)
	return b.String()
}

// writeSet writes the channels in bitset set as "[0-3 5]".
func (a *Aligner) writeSet(b *strings.Builder, set []uint64) {
	b.WriteByte('[')
	first := true
	for ch := 0; ch < a.numInputs; ch++ {
		if !hasBit(set, ch) {
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(strconv.Itoa(ch))
		end := ch
		for end+1 < a.numInputs && hasBit(set, end+1) {
			end++
		}
		if end-ch >= 2 { // runs of three or more print as a range
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(end))
			ch = end
		}
	}
	b.WriteByte(']')
}

// checkElement panics if an element (barrier or cancellation marker) for id
// cannot legally be read from channel ch now.
func (a *Aligner) checkElement(what string, ch int, id uint64) {
	if uint(ch) >= uint(a.numInputs) {
		a.badChannel(what, ch)
	}
	if id == 0 {
		panic(fmt.Sprintf("align: %s with checkpoint id 0 on channel %d: ids are positive", what, ch))
	}
	if hasBit(a.ended, ch) {
		panic(fmt.Sprintf("align: %s %d on channel %d after its end-of-input; state: %s", what, id, ch, a))
	}
	if a.Blocked(ch) {
		if what == "barrier" && id == a.lastBarrier[ch] {
			panic(fmt.Sprintf("align: duplicate barrier %d on channel %d; state: %s", id, ch, a))
		}
		panic(fmt.Sprintf("align: %s %d read from blocked channel %d; state: %s", what, id, ch, a))
	}
}

func (a *Aligner) badChannel(what string, ch int) {
	panic(fmt.Sprintf("align: %s: channel %d out of range [0, %d)", what, ch, a.numInputs))
}

// slot returns the physical slot of logical pending entry i.
func (a *Aligner) slot(i int) int {
	s := a.head + i
	if s >= len(a.pend) {
		s -= len(a.pend)
	}
	return s
}

func (a *Aligner) slotBits(s int) []uint64 {
	return a.arrived[s*a.words : (s+1)*a.words]
}

// find returns the logical index of pending checkpoint id.
func (a *Aligner) find(id uint64) (int, bool) {
	for i := 0; i < a.size; i++ {
		if a.pend[a.slot(i)].id == id {
			return i, true
		}
	}
	return 0, false
}

// dropFirst removes the n oldest pending entries, zeroing their bitsets.
func (a *Aligner) dropFirst(n int) {
	for ; n > 0; n-- {
		clear(a.slotBits(a.head))
		a.pend[a.head] = pending{}
		a.head = a.slot(1)
		a.size--
	}
	if a.size == 0 {
		a.head = 0
	}
}

func hasBit(set []uint64, i int) bool { return set[i>>6]&(1<<(uint(i)&63)) != 0 }
func setBit(set []uint64, i int)      { set[i>>6] |= 1 << (uint(i) & 63) }
