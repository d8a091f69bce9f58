// Package failpoint lets crash tests kill the process at named points.
//
// A failpoint is a named place in the code (failpoint.Hit("snapshot-async"))
// that does nothing unless the environment variable STREAMD_FAILPOINTS names
// it. The variable is a comma-separated list of name=probability entries,
// e.g. "snapshot-async=0.3,sink-after-rename=1". When a named point is hit,
// it fires with that probability: it writes "failpoint NAME hit" to standard
// error and kills the process with SIGKILL, exactly as an operator's
// `kill -9` or a power loss would (no deferred functions, no flushing).
//
// STREAMD_FAILPOINTS_SEED fixes the random sequence, for reproducible runs.
// When the variable is unset, Hit costs one atomic load.
//
// This package owns only the mechanism; the names of the points are listed
// in the README ("Crash testing").
package failpoint

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// EnvVar names the environment variable that enables failpoints.
const EnvVar = "STREAMD_FAILPOINTS"

// SeedEnvVar names the environment variable that seeds the random choice.
const SeedEnvVar = "STREAMD_FAILPOINTS_SEED"

var (
	enabled atomic.Bool
	mu      struct {
		sync.Mutex
		points map[string]float64 // name -> probability in [0, 1]
		rng    *rand.Rand
	}
)

func init() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	points, err := Parse(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "streamd: ignoring %s: %v\n", EnvVar, err)
		return
	}
	seed := uint64(os.Getpid())
	if s := os.Getenv(SeedEnvVar); s != "" {
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			seed = v
		}
	}
	mu.points = points
	mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	enabled.Store(true)
}

// Parse decodes a failpoint specification "name=prob,name=prob".
func Parse(spec string) (map[string]float64, error) {
	points := make(map[string]float64)
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, probStr, ok := strings.Cut(part, "=")
		if !ok {
			probStr = "1"
		}
		prob, err := strconv.ParseFloat(probStr, 64)
		if err != nil || prob < 0 || prob > 1 {
			return nil, fmt.Errorf("failpoint %q: probability %q is not a number in [0, 1]", name, probStr)
		}
		points[name] = prob
	}
	return points, nil
}

// Enabled reports whether any failpoint is configured.
func Enabled() bool { return enabled.Load() }

// Hit kills the process if the failpoint name is enabled and fires.
func Hit(name string) {
	if !enabled.Load() {
		return
	}
	mu.Lock()
	prob, ok := mu.points[name]
	fire := ok && mu.rng.Float64() < prob
	mu.Unlock()
	if !fire {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint %s hit\n", name)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; wait for it to land.
}
