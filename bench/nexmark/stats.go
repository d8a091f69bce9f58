package nexmark

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Percentile returns the nearest-rank q-quantile (q in [0, 1]) of sorted,
// which must be sorted ascending: the smallest value such that at least
// q·n of the values are at most it — element ceil(q·n) − 1, the first for
// q = 0. It returns 0 for no values.
func Percentile[N int64 | float64](sorted []N, q float64) N {
	if len(sorted) == 0 {
		return 0
	}
	if q < 0 || q > 1 || math.IsNaN(q) {
		panic(fmt.Sprintf("nexmark: Percentile of %v: a quantile is in [0, 1]", q))
	}
	// q·n is rounded to 12 significant digits before the ceiling, so that
	// a product a hair above an integer in binary (0.07·100 is
	// 7.000000000000001) does not skip a rank.
	rank := math.Ceil(roundSignificant(q * float64(len(sorted))))
	return sorted[max(0, min(int(rank)-1, len(sorted)-1))]
}

// roundSignificant rounds x to 12 significant decimal digits.
func roundSignificant(x float64) float64 {
	if x == 0 {
		return 0
	}
	scale := math.Pow(10, 12-math.Ceil(math.Log10(math.Abs(x))))
	return math.Round(x*scale) / scale
}

// Percentiles returns the nearest-rank quantiles qs of xs, which it does
// not modify.
func Percentiles[N int64 | float64](xs []N, qs ...float64) []N {
	s := slices.Clone(xs)
	slices.Sort(s)
	out := make([]N, len(qs))
	for i, q := range qs {
		out[i] = Percentile(s, q)
	}
	return out
}

// Spread is a figure over several runs: its median and range.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// SpreadOf returns the median (the mean of the middle two for an even
// count), minimum and maximum of xs; the zero Spread for none.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Spread{Median: med, Min: s[0], Max: s[n-1]}
}

// cpuTime returns the process's user and system CPU time so far
// (getrusage RUSAGE_SELF: every thread of the process).
func cpuTime() (user, system time.Duration, err error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, fmt.Errorf("nexmark: cannot read the process's CPU time (getrusage): %w", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), nil
}

// How peak RSS was measured (Result.PeakRSSMethod).
const (
	// RSSReset: the kernel's high-water mark was reset before the run
	// (/proc/self/clear_refs) and read after it (VmHWM): the run's own
	// peak.
	RSSReset = "VmHWM after reset via /proc/self/clear_refs"
	// RSSLifetime: the reset was not possible; the figure is the process's
	// peak since it started (getrusage ru_maxrss), which includes earlier
	// runs of the same process.
	RSSLifetime = "ru_maxrss: process lifetime peak (no reset)"
)

// resetPeakRSS prepares a run's peak RSS measurement: it collects
// garbage and returns free memory to the OS, so the run starts from the
// process's live memory and not from what an earlier run left, then asks
// the kernel to reset VmHWM to the current RSS. It returns the method
// readPeakRSS must use.
func resetPeakRSS() string {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return RSSLifetime
	}
	return RSSReset
}

// readPeakRSS returns the peak resident set size in bytes, by method.
func readPeakRSS(method string) (int64, error) {
	if method == RSSReset {
		data, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return 0, fmt.Errorf("nexmark: cannot read peak RSS: %w", err)
		}
		return parseVmHWM(data)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("nexmark: cannot read peak RSS (getrusage): %w", err)
	}
	return ru.Maxrss * 1024, nil // kilobytes on Linux
}

// parseVmHWM returns the VmHWM line of /proc/self/status in bytes.
func parseVmHWM(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:"))
		if !ok {
			continue
		}
		num, unit, _ := bytes.Cut(bytes.TrimSpace(rest), []byte(" "))
		kb, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || string(bytes.TrimSpace(unit)) != "kB" {
			return 0, fmt.Errorf("nexmark: cannot parse %q in /proc/self/status", sc.Text())
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("nexmark: /proc/self/status has no VmHWM line")
}
