package nexmark

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1) // 1 … 100
	}
	for _, tc := range []struct {
		xs   []int64
		q    float64
		want int64
	}{
		{nil, 0.5, 0},
		{[]int64{7}, 0, 7},
		{[]int64{7}, 0.5, 7},
		{[]int64{7}, 1, 7},
		{[]int64{1, 2}, 0.5, 1}, // ceil(1) = rank 1
		{[]int64{1, 2}, 0.51, 2},
		{[]int64{1, 2, 3}, 0.5, 2},
		{[]int64{1, 2, 3, 4}, 0.5, 2},
		{[]int64{1, 2, 3, 4}, 0.75, 3},
		{[]int64{1, 2, 3, 4}, 0.99, 4},
		{[]int64{1, 2, 3, 4}, 0, 1},
		{hundred, 0.5, 50},
		{hundred, 0.99, 99}, // exactly rank 99: not 100
		{hundred, 0.07, 7},  // 0.07·100 is 7.000000000000001 in binary
		{hundred, 0.991, 100},
		{hundred, 1, 100},
		{hundred, 0.001, 1},
	} {
		if got := Percentile(tc.xs, tc.q); got != tc.want {
			t.Errorf("Percentile(%d values, %v) = %d, want %d", len(tc.xs), tc.q, got, tc.want)
		}
	}
	if got := Percentiles([]int64{5, 1, 4, 2, 3}, 0, 0.5, 1); fmt.Sprint(got) != "[1 3 5]" {
		t.Errorf("Percentiles of unsorted values: %v", got)
	}
	if got := Percentile([]float64{0.5, 1.5}, 1); got != 1.5 {
		t.Errorf("float Percentile: %v", got)
	}
	for _, q := range []float64{-0.1, 1.1, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Percentile(q=%v) did not panic", q)
				}
			}()
			Percentile([]int64{1}, q)
		}()
	}
}

func TestSpreadOf(t *testing.T) {
	f := func(xs []float64, want Spread) {
		t.Helper()
		if got := SpreadOf(xs); got != want {
			t.Errorf("SpreadOf(%v) = %+v, want %+v", xs, got, want)
		}
	}
	f(nil, Spread{})
	f([]float64{3}, Spread{3, 3, 3})
	f([]float64{3, 1, 2}, Spread{2, 1, 3})
	f([]float64{4, 1, 2, 10}, Spread{3, 1, 10})
}

func TestParseVmHWM(t *testing.T) {
	f := func(status string, want int64, wantErr string) {
		t.Helper()
		got, err := parseVmHWM([]byte(status))
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("parseVmHWM(%q): %d, %v; want error %q", status, got, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("parseVmHWM(%q) = %d, %v; want %d", status, got, err, want)
		}
	}
	f("Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t   46440 kB\nVmRSS:\t 1 kB\n", 46440*1024, "")
	f("VmHWM: 0 kB", 0, "")
	f("VmRSS:\t1 kB\n", 0, "no VmHWM line")
	f("VmHWM:\t12 MB\n", 0, "cannot parse")
	f("VmHWM:\tx kB\n", 0, "cannot parse")
	f("", 0, "no VmHWM line")
}

// FuzzParseVmHWM: any input parses or is refused without a panic; a
// well-formed line reads back what was written.
func FuzzParseVmHWM(f *testing.F) {
	f.Add([]byte("VmHWM:\t   46440 kB\n"), int64(7))
	f.Add([]byte("VmHWM:"), int64(0))
	f.Add([]byte("Name: a\nVmHWM:\t-1 kB"), int64(1<<40))
	f.Fuzz(func(t *testing.T, status []byte, kb int64) {
		if n, err := parseVmHWM(status); err == nil && !strings.Contains(string(status), "VmHWM:") {
			t.Fatalf("parsed %d from input without a VmHWM line", n)
		}
		kb = max(kb, 0) % (1 << 40)
		line := fmt.Sprintf("VmRSS:\t1 kB\nVmHWM:\t%8d kB\n", kb)
		if n, err := parseVmHWM([]byte(line)); err != nil || n != kb*1024 {
			t.Fatalf("parseVmHWM(%q) = %d, %v", line, n, err)
		}
	})
}

func TestPeakRSSReset(t *testing.T) {
	method := resetPeakRSS()
	if method != RSSReset {
		t.Skipf("this system cannot reset the high-water mark: %s", method)
	}
	before, err := readPeakRSS(method)
	if err != nil {
		t.Fatal(err)
	}
	// Touch 64 MiB more than the process had: the peak must see it.
	big := make([]byte, 64<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	after, err := readPeakRSS(method)
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 60<<20 {
		t.Errorf("peak RSS went from %d to %d after touching 64 MiB", before, after)
	}
	big = nil
	resetPeakRSS()
	reset, err := readPeakRSS(method)
	if err != nil {
		t.Fatal(err)
	}
	if reset >= after {
		t.Errorf("peak RSS after the reset is %d, not below the earlier peak %d", reset, after)
	}
}

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		want string
	}{
		{0, "0"}, {7, "7.00"}, {12.5, "12.5"}, {999, "999"}, {999.6, "1.00 k"}, {1234, "1.23 k"},
		{155020, "155 k"}, {3_538_205, "3.54 M"}, {42e9, "42.0 G"}, {-2500, "-2.50 k"},
	} {
		if got := human(tc.x); got != tc.want {
			t.Errorf("human(%v) = %q, want %q", tc.x, got, tc.want)
		}
	}
	if got := sig3(1234.5); got != "1234" && got != "1235" {
		t.Errorf("sig3(1234.5) = %q", got)
	}
}
