package engine

import (
	"golang.org/x/sys/unix"
)

// planPinning decides which core each worker's thread is pinned to, or nil
// for none. allowed lists the cores the process may run on; procs is
// GOMAXPROCS, the number of goroutines that run at once: PinAuto pins only
// when there are at least as many of both as workers, since a locked
// thread without a P of its own waits for another locked thread to hand
// it one through the OS.
func planPinning(mode PinMode, workers int, allowed []int, procs int) []int {
	if mode == PinOff || len(allowed) == 0 || workers == 0 {
		return nil
	}
	if mode == PinAuto && (workers > len(allowed) || workers > procs) {
		return nil
	}
	cpus := make([]int, workers)
	for i := range cpus {
		cpus[i] = allowed[i%len(allowed)]
	}
	return cpus
}

// usableCPUs returns the cores this process may run on; override > 0
// pretends there are that many (cores 0..override-1), for tests.
func usableCPUs(override int) []int {
	if override > 0 {
		cpus := make([]int, override)
		for i := range cpus {
			cpus[i] = i
		}
		return cpus
	}
	return threadAffinity()
}

// pinThread pins the calling OS thread (the worker goroutine is locked to
// it) to cpu. unpin gives the thread its old affinity back and reports
// whether it could; the worker calls it before it unlocks the thread, since
// an unlocked thread goes back to the Go runtime's pool and would run any
// goroutine on that one core. When unpin fails the worker stays locked,
// and the runtime ends the thread with the goroutine.
func pinThread(cpu int) (unpin func() bool, err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return func() bool { return true }, err // nothing changed
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return func() bool { return true }, err
	}
	return func() bool { return unix.SchedSetaffinity(0, &old) == nil }, nil
}

// threadAffinity returns the cores the calling OS thread may run on.
func threadAffinity() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
