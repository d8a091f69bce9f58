package bench

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Notes are figures that do not fit the table's per-record columns
// (percentiles of checkpoint pauses and durations, restore throughput).
// Cases record them with Note; streamd-bench prints them under the table.
var notes struct {
	mu   sync.Mutex
	keys []string
	text map[string]string
}

// Note records a figure under key (a later Note with the same key
// replaces it: the last run's value is reported).
func Note(key, format string, args ...any) {
	notes.mu.Lock()
	defer notes.mu.Unlock()
	if notes.text == nil {
		notes.text = make(map[string]string)
	}
	if _, ok := notes.text[key]; !ok {
		notes.keys = append(notes.keys, key)
	}
	notes.text[key] = fmt.Sprintf(format, args...)
}

// Notes returns the recorded figures in the order first recorded.
func Notes() []string {
	notes.mu.Lock()
	defer notes.mu.Unlock()
	out := make([]string, len(notes.keys))
	for i, k := range notes.keys {
		out[i] = notes.text[k]
	}
	return out
}

// percentiles returns the nearest-rank p50 and p99 of ds.
func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2], s[min(len(s)-1, (len(s)*99+99)/100-1)]
}
