package keyed

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// TestHashKeyGolden pins HashKey and KeyGroupOf: checkpoints depend on
// them, so these values must never change.
func TestHashKeyGolden(t *testing.T) {
	f := func(key string, wantHash uint64, wantKG128, wantKG32768 int) {
		t.Helper()
		h := HashKey([]byte(key))
		if h != wantHash {
			t.Errorf("HashKey(%q) = %#x, want %#x", key, h, wantHash)
		}
		if kg := KeyGroupOf(h, 128); kg != wantKG128 {
			t.Errorf("KeyGroupOf(%q, 128) = %d, want %d", key, kg, wantKG128)
		}
		if kg := KeyGroupOf(h, MaxMaxParallelism); kg != wantKG32768 {
			t.Errorf("KeyGroupOf(%q, 32768) = %d, want %d", key, kg, wantKG32768)
		}
	}
	// xxHash64, seed 0 (reference values of the xxHash specification).
	f("", 0xef46db3751d8e999, 119, 30627)
	f("a", 0xd24ec4f1a98c6e5b, 105, 26919)
	f("abc", 0x44bc2cf5ad770999, 34, 8798)
}

func TestKeyGroupOfRangeAndSpread(t *testing.T) {
	for _, maxP := range []int{1, 2, 3, 128, 1000, MaxMaxParallelism} {
		counts := make([]int, maxP)
		n := 200 * maxP
		if n > 2_000_000 {
			n = 2_000_000
		}
		var k [8]byte
		for i := range n {
			binary.BigEndian.PutUint64(k[:], uint64(i))
			kg := KeyGroupOf(HashKey(k[:]), maxP)
			if kg < 0 || kg >= maxP {
				t.Fatalf("KeyGroupOf(_, %d) = %d", maxP, kg)
			}
			counts[kg]++
		}
		mean := float64(n) / float64(maxP)
		for kg, c := range counts {
			// Binomial counts: 6 standard deviations is never reached
			// by chance across 32768 groups.
			if math.Abs(float64(c)-mean) > 6*math.Sqrt(mean) {
				t.Fatalf("max %d: key group %d has %d keys, mean %.0f", maxP, kg, c, mean)
			}
		}
	}
	if KeyGroupOf(^uint64(0), MaxMaxParallelism) != MaxMaxParallelism-1 || KeyGroupOf(0, MaxMaxParallelism) != 0 {
		t.Fatal("KeyGroupOf does not span the range")
	}
}

// TestRangeAssignment checks, for every max parallelism and parallelism up
// to 512, that the ranges are non-empty, consecutive, cover all key groups,
// and agree with TaskForKeyGroup.
func TestRangeAssignment(t *testing.T) {
	for maxP := 1; maxP <= 512; maxP++ {
		for par := 1; par <= maxP; par++ {
			next := 0
			for task := range par {
				r := RangeForTask(maxP, par, task)
				if r.Start != next || r.Len() < 1 {
					t.Fatalf("RangeForTask(%d, %d, %d) = %v, want a non-empty range from %d", maxP, par, task, r, next)
				}
				for kg := r.Start; kg < r.End; kg++ {
					if got := TaskForKeyGroup(maxP, par, kg); got != task {
						t.Fatalf("TaskForKeyGroup(%d, %d, %d) = %d, want %d", maxP, par, kg, got, task)
					}
				}
				next = r.End
			}
			if next != maxP {
				t.Fatalf("max %d par %d: ranges end at %d", maxP, par, next)
			}
		}
	}
	// Flink's values for max 128, parallelism 3: [0,43) [43,86) [86,128).
	for i, want := range []KeyGroupRange{{0, 43}, {43, 86}, {86, 128}} {
		if got := RangeForTask(128, 3, i); got != want {
			t.Errorf("RangeForTask(128, 3, %d) = %v, want %v", i, got, want)
		}
	}
}

func TestRangeAssignmentPanics(t *testing.T) {
	f := func(name, want string, fn func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(fmt.Sprint(r), want) {
				t.Errorf("%s: panic %v, want one containing %q", name, r, want)
			}
		}()
		fn()
	}
	f("par > max", "parallelism 5 out of range", func() { RangeForTask(4, 5, 0) })
	f("max 0", "max parallelism 0", func() { RangeForTask(0, 1, 0) })
	f("max too large", "max parallelism 32769", func() { TaskForKeyGroup(MaxMaxParallelism+1, 1, 0) })
	f("task", "task index 3 out of range", func() { RangeForTask(8, 3, 3) })
	f("kg", "key group 8 out of range", func() { TaskForKeyGroup(8, 3, 8) })
}

func TestKeyGroupRange(t *testing.T) {
	r := KeyGroupRange{Start: 3, End: 7}
	if r.Len() != 4 || !r.Contains(3) || !r.Contains(6) || r.Contains(7) || r.Contains(2) {
		t.Fatal(r)
	}
	if (KeyGroupRange{5, 2}).Len() != 0 || r.String() != "[3, 7)" {
		t.Fatal("Len of an inverted range, or String")
	}
}

func TestOptionsValidate(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.MaxParallelism != DefaultMaxParallelism || o.Range != (KeyGroupRange{0, 128}) || o.PageSizeBytes != DefaultPageSizeBytes || o.Clock == nil {
		t.Fatalf("defaults: %+v", o)
	}
	bad := Options{MaxParallelism: 40000, Range: KeyGroupRange{5, 2}, PageSizeBytes: 3000}
	err := bad.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"MaxParallelism = 40000", "Range = [5, 2)", "PageSizeBytes = 3000", "Clock is nil"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	bad = Options{MaxParallelism: 8, Range: KeyGroupRange{4, 9}, PageSizeBytes: 1 << 21, Clock: func() int64 { return 0 }}
	err = bad.Validate()
	for _, want := range []string{"within [0, 8)", "PageSizeBytes = 2097152"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	if _, err := NewBackend(Options{PageSizeBytes: 100}); err == nil {
		t.Fatal("NewBackend accepted a bad page size")
	}
}

// TestHashKey8 checks HashKey's inlined 8-byte path against xxhash.Sum64,
// which HashKey is defined to be, forever.
func TestHashKey8(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var key [8]byte
	check := func() {
		if got, want := HashKey(key[:]), xxhash.Sum64(key[:]); got != want {
			t.Fatalf("HashKey(%x) = %#x, xxhash.Sum64 = %#x", key, got, want)
		}
	}
	for i := range 1 << 16 {
		binary.BigEndian.PutUint64(key[:], uint64(i))
		check()
		binary.LittleEndian.PutUint64(key[:], r.Uint64())
		check()
	}
	for _, x := range []uint64{0, ^uint64(0), 1 << 63, 0x0123456789abcdef} {
		binary.LittleEndian.PutUint64(key[:], x)
		check()
	}
}
