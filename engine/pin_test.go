package engine

import (
	"runtime"
	"slices"
	"testing"
)

func TestPlanPinning(t *testing.T) {
	g := func(mode PinMode, workers, cores, procs int, want []int) {
		t.Helper()
		got := planPinning(mode, workers, usableCPUs(cores), procs)
		if !slices.Equal(got, want) {
			t.Fatalf("planPinning(%d, %d workers, %d cores, GOMAXPROCS %d) = %v, want %v", mode, workers, cores, procs, got, want)
		}
	}
	f := func(mode PinMode, workers, cores int, want []int) {
		t.Helper()
		g(mode, workers, cores, cores, want)
	}
	f(PinAuto, 4, 8, []int{0, 1, 2, 3})
	f(PinAuto, 8, 8, []int{0, 1, 2, 3, 4, 5, 6, 7})
	f(PinAuto, 3, 2, nil) // oversubscribed: never pin
	f(PinOff, 2, 8, nil)
	f(PinOn, 3, 2, []int{0, 1, 0})
	f(PinAuto, 0, 2, nil)
	g(PinAuto, 2, 8, 1, nil)         // GOMAXPROCS=1: two locked threads would share one P
	g(PinAuto, 2, 8, 2, []int{0, 1}) // enough of both
	g(PinOn, 2, 8, 1, []int{0, 1})   // PinOn pins regardless
}

func TestUsableCPUsOnThisMachine(t *testing.T) {
	if cpus := usableCPUs(0); len(cpus) == 0 {
		t.Fatal("no usable CPUs found with sched_getaffinity")
	}
}

// A pinned worker thread goes back to the runtime's pool when the worker
// ends: it must get its old affinity back first, or any goroutine the
// runtime later runs on it would be confined to one core.
func TestPinThreadRestoresAffinity(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		before := threadAffinity()
		if len(before) == 0 {
			t.Error("no affinity for this thread")
			return
		}
		cpu := before[len(before)-1]
		unpin, err := pinThread(cpu)
		if err != nil {
			t.Errorf("pinThread(%d): %v", cpu, err)
			return
		}
		if got := threadAffinity(); !slices.Equal(got, []int{cpu}) {
			t.Errorf("pinned to %d, affinity %v", cpu, got)
		}
		if !unpin() {
			t.Error("unpin failed")
		}
		if got := threadAffinity(); !slices.Equal(got, before) {
			t.Errorf("affinity after unpin %v, want %v as before", got, before)
		}
	}()
	<-done
}
