//go:build failpoints

package failpoint

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// Compiled reports whether failpoints are compiled into this binary: true,
// it was built with -tags failpoints.
const Compiled = true

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

// Enabled reports whether any failpoint is armed.
func Enabled() bool { return enabled.Load() }

// Hit kills the process if the failpoint name is armed and fires.
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
