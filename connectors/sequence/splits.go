package sequence

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamd/streamd/engine"
)

// maxSplits bounds the splits of a sequence source: Reassign subdivides
// splits to balance the tasks exactly only while the result stays within
// it (and checks the splits form a partition in O(splits²)).
const maxSplits = 1024

// SplitSource is the sequence as a splittable source (engine.FromSplitSource),
// which a restore may rescale:
//
//	src := sequence.NewSplitSource(opts)
//	s := engine.FromSplitSource(j, "source", src, src.NewReader)
//
// A split is a residue class {i : i % stride == rem} with its next i, ID
// "i%stride==rem", position the next i in decimal: the splits of a source
// partition [0, Count), so every record is emitted exactly once across all
// tasks. A fresh start gives task j of p the split i%p==j (the records
// of the plain source's task j). A restore at another parallelism keeps
// every split's progress and subdivides splits when there are too few to
// balance: the class i%s==r with next n becomes k classes i%(s·k)==r+m·s,
// each starting at its first element at or after n, so nothing is emitted
// twice or lost. Finished splits stay in the checkpoint. A reader emits
// from the split with the smallest next, a batch of one split per Read
// (so that watermarks can be generated per split); its rate limit
// is the source's RatePerSec times its unfinished splits' share of the
// sequence (the sum of 1/stride).
type SplitSource[T any] struct {
	opts Options[T]
}

// NewSplitSource returns the splittable sequence source of opts.
func NewSplitSource[T any](opts Options[T]) *SplitSource[T] {
	return &SplitSource[T]{opts: opts}
}

// seqSplit is one residue class and its next record.
type seqSplit struct {
	rem, stride int64 // the class {i : i % stride == rem}
	next        int64 // the next i to emit, in the class, >= rem
}

func (s seqSplit) id() string { return fmt.Sprintf("i%%%d==%d", s.stride, s.rem) }

func (s seqSplit) split() engine.Split {
	return engine.Split{ID: s.id(), State: strconv.AppendInt(nil, s.next, 10)}
}

// finished reports whether the split has nothing more to emit.
func (s seqSplit) finished(count int64) bool { return count >= 0 && s.next >= count }

// parseSplit decodes a split the source wrote, strictly.
func parseSplit(sp engine.Split) (seqSplit, error) {
	bad := func(why string) (seqSplit, error) {
		return seqSplit{}, fmt.Errorf("sequence: split %q (position %q) %s", sp.ID, sp.State, why)
	}
	rest, ok := strings.CutPrefix(sp.ID, "i%")
	if !ok {
		return bad("is not a sequence split (want an ID i%STRIDE==REM)")
	}
	strideText, remText, ok := strings.Cut(rest, "==")
	if !ok {
		return bad("is not a sequence split (want an ID i%STRIDE==REM)")
	}
	var s seqSplit
	var err1, err2, err3 error
	s.stride, err1 = parseDecimal(strideText)
	s.rem, err2 = parseDecimal(remText)
	s.next, err3 = parseDecimal(string(sp.State))
	switch {
	case err1 != nil || err2 != nil:
		return bad("has a malformed ID")
	case err3 != nil:
		return bad("has a malformed position")
	case s.stride < 1 || s.rem >= s.stride:
		return bad("is not a residue class (want 0 <= REM < STRIDE)")
	case s.next < s.rem || (s.next-s.rem)%s.stride != 0:
		return bad("has a position outside its class")
	}
	return s, nil
}

// parseDecimal parses a canonical non-negative decimal int64: digits
// only, no sign, no leading zero.
func parseDecimal(s string) (int64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("sequence: %q is not a canonical decimal", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

// Initial gives task j of parallelism the split i%parallelism==j.
func (src *SplitSource[T]) Initial(parallelism int) ([][]engine.Split, error) {
	if err := src.opts.Validate(); err != nil {
		return nil, err
	}
	asg := make([][]engine.Split, parallelism)
	for j := range asg {
		p := int64(parallelism)
		asg[j] = []engine.Split{seqSplit{rem: int64(j), stride: p, next: int64(j)}.split()}
	}
	return asg, nil
}

// SplitsOfPosition converts the position of task index of parallelism
// of the plain source (New), its next i, into its split.
func (src *SplitSource[T]) SplitsOfPosition(index, parallelism int, position []byte) ([]engine.Split, error) {
	next, err := decodePosition(position, index, parallelism)
	if err != nil {
		return nil, err
	}
	return []engine.Split{seqSplit{rem: int64(index), stride: int64(parallelism), next: next}.split()}, nil
}

// Reassign deals the splits out to parallelism tasks. It checks that they
// partition the sequence (pairwise disjoint, shares summing to 1), then
// subdivides the unfinished ones when that balances the tasks exactly
// (all of one stride, and a count the parallelism divides) within
// maxSplits, or, failing that, at least gives every task one when there
// are fewer than tasks; it deals the largest shares first, each to the
// task with the smallest share so far. Finished splits are dealt round
// robin.
func (src *SplitSource[T]) Reassign(all []engine.Split, parallelism int) ([][]engine.Split, error) {
	if err := src.opts.Validate(); err != nil {
		return nil, err
	}
	splits := make([]seqSplit, len(all))
	for i, sp := range all {
		s, err := parseSplit(sp)
		if err != nil {
			return nil, err
		}
		splits[i] = s
	}
	if err := checkPartition(splits); err != nil {
		return nil, err
	}
	count := src.opts.Count
	var open, done []seqSplit
	for _, s := range splits {
		if s.finished(count) {
			done = append(done, s)
		} else {
			open = append(open, s)
		}
	}
	open, err := subdivide(open, parallelism, len(done), count)
	if err != nil {
		return nil, err
	}
	// Largest share (smallest stride) first; ties in ID order, so the
	// result is deterministic.
	slices.SortFunc(open, func(a, b seqSplit) int {
		return cmp.Or(cmp.Compare(a.stride, b.stride), cmp.Compare(a.rem, b.rem))
	})
	asg := make([][]engine.Split, parallelism)
	share := make([]*big.Rat, parallelism)
	for j := range share {
		share[j] = new(big.Rat)
	}
	for _, s := range open {
		least := 0
		for j := 1; j < parallelism; j++ {
			if share[j].Cmp(share[least]) < 0 {
				least = j
			}
		}
		share[least].Add(share[least], big.NewRat(1, s.stride))
		asg[least] = append(asg[least], s.split())
	}
	for i, s := range done {
		asg[i%parallelism] = append(asg[i%parallelism], s.split())
	}
	return asg, nil
}

// subdivide returns the unfinished splits open, subdivided so that
// parallelism tasks can share them evenly: when all have one stride, into
// k parts each with k the least that makes the count a multiple of
// parallelism, if the result (with the finished splits, of which there
// are done) stays within maxSplits; else, when there are fewer splits
// than tasks, into ceil(parallelism/len(open)) parts each, within the
// same limit.
func subdivide(open []seqSplit, parallelism, done int, count int64) ([]seqSplit, error) {
	if len(open) == 0 {
		return open, nil
	}
	n := int64(len(open))
	p := int64(parallelism)
	uniform := !slices.ContainsFunc(open, func(s seqSplit) bool { return s.stride != open[0].stride })
	k := int64(1)
	if g := gcd(n, p); uniform && n*(p/g)+int64(done) <= maxSplits {
		k = p / g
	} else if n < p {
		k = min((p+n-1)/n, max(1, (maxSplits-int64(done))/n))
	}
	if k == 1 {
		return open, nil
	}
	out := make([]seqSplit, 0, n*k)
	for _, s := range open {
		if s.stride > math.MaxInt64/k {
			return nil, fmt.Errorf("sequence: cannot subdivide split %s into %d: its stride would overflow", s.id(), k)
		}
		q := (s.next - s.rem) / s.stride // s.next is element q of the class
		for m := range k {
			// Child m holds the elements r + q'·s with q' ≡ m (mod k);
			// its first one at or after s.next has q' = q + (m-q) mod k.
			qm := q + ((m-q%k)+k)%k
			if qm > (math.MaxInt64-s.rem)/s.stride {
				return nil, fmt.Errorf("sequence: cannot subdivide split %s at position %d: its positions would overflow", s.id(), s.next)
			}
			out = append(out, seqSplit{rem: s.rem + m*s.stride, stride: s.stride * k, next: s.rem + qm*s.stride})
		}
	}
	return out, nil
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// checkPartition checks that splits partition the natural numbers: no two
// residue classes overlap, and their shares (1/stride) sum to 1. Then no
// record is emitted twice and none is lost.
func checkPartition(splits []seqSplit) error {
	if len(splits) > maxSplits {
		return fmt.Errorf("sequence: %d splits, more than the limit %d", len(splits), maxSplits)
	}
	sum := new(big.Rat)
	for i, a := range splits {
		sum.Add(sum, big.NewRat(1, a.stride))
		for _, b := range splits[:i] {
			// Two classes r1 mod s1 and r2 mod s2 meet iff r1 ≡ r2 mod gcd(s1, s2).
			if g := gcd(a.stride, b.stride); a.rem%g == b.rem%g {
				return fmt.Errorf("sequence: splits %s and %s overlap: their records would be emitted twice", a.id(), b.id())
			}
		}
	}
	if sum.Cmp(big.NewRat(1, 1)) != 0 {
		return fmt.Errorf("sequence: the splits cover %s of the sequence, not all of it: records would be lost", sum.RatString())
	}
	return nil
}

// NewReader returns the reader of one task's splits (for
// engine.FromSplitSource).
func (src *SplitSource[T]) NewReader(_ engine.SourceContext, splits []engine.Split) (engine.SplitReader[T], error) {
	if err := src.opts.Validate(); err != nil {
		return nil, err
	}
	r := &splitReader[T]{opts: src.opts, mk: src.opts.maker(), splits: make([]seqSplit, len(splits)), start: time.Now()}
	share := new(big.Rat)
	for i, sp := range splits {
		s, err := parseSplit(sp)
		if err != nil {
			return nil, err
		}
		r.splits[i] = s
		if !s.finished(src.opts.Count) {
			share.Add(share, big.NewRat(1, s.stride))
		}
	}
	f, _ := share.Float64()
	r.rate = src.opts.RatePerSec * f
	return r, nil
}

type splitReader[T any] struct {
	opts    Options[T]
	mk      func(i, key int64, v *T) // this reader's Make
	splits  []seqSplit
	rate    float64 // records per second for this task (0: unlimited)
	start   time.Time
	emitted float64 // records emitted since start (for the rate limit)
	last    int     // the split of the last Read (LastSplit), -1 for none
}

// LastSplit implements engine.SplitWatermarks: every record of a Read
// comes from one split, so event time can be tracked per split.
func (r *splitReader[T]) LastSplit() int { return r.last }

// SplitFinished implements engine.SplitWatermarks.
func (r *splitReader[T]) SplitFinished(i int) bool { return r.splits[i].finished(r.opts.Count) }

func (r *splitReader[T]) Read(buf []T) (int, error) {
	n := len(buf)
	if r.opts.RatePerSec > 0 {
		allowed := time.Since(r.start).Seconds()*r.rate - r.emitted
		if allowed < 1 {
			if r.done() {
				return 0, io.EOF
			}
			return 0, nil
		}
		if allowed < float64(n) { // compare as floats: int(allowed) may overflow
			n = int(allowed)
		}
	}
	count, keys, mk := r.opts.Count, r.opts.Keys, r.mk
	// One split per Read (engine.SplitWatermarks): the unfinished split
	// with the smallest next.
	i, cur := 0, -1
	for j := range r.splits {
		if s := &r.splits[j]; !s.finished(count) && (cur < 0 || s.next < r.splits[cur].next) {
			cur = j
		}
	}
	r.last = cur
	if cur >= 0 {
		s := &r.splits[cur]
		next, stride := s.next, s.stride
		out := buf[:n]
		if count >= 0 {
			if left := (count - next + stride - 1) / stride; left < int64(len(out)) {
				out = out[:left]
			}
		}
		for j := range out {
			mk(next, next%keys, &out[j])
			next += stride
		}
		s.next = next
		i = len(out)
	}
	r.emitted += float64(i)
	if r.done() {
		return i, io.EOF
	}
	return i, nil
}

// done reports whether every split is finished.
func (r *splitReader[T]) done() bool {
	for _, s := range r.splits {
		if !s.finished(r.opts.Count) {
			return false
		}
	}
	return true
}

func (r *splitReader[T]) Splits() ([]engine.Split, error) {
	out := make([]engine.Split, len(r.splits))
	for i, s := range r.splits {
		out[i] = s.split()
	}
	return out, nil
}

func (r *splitReader[T]) Close() error { return nil }
