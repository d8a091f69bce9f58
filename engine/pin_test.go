package engine

import (
	"slices"
	"testing"
)

func TestPlanPinning(t *testing.T) {
	f := func(mode PinMode, tasks, cores int, want []int) {
		t.Helper()
		got := planPinning(mode, tasks, usableCPUs(cores))
		if !slices.Equal(got, want) {
			t.Fatalf("planPinning(%d, %d tasks, %d cores) = %v, want %v", mode, tasks, cores, got, want)
		}
	}
	f(PinAuto, 4, 8, []int{0, 1, 2, 3})
	f(PinAuto, 8, 8, []int{0, 1, 2, 3, 4, 5, 6, 7})
	f(PinAuto, 3, 2, nil) // oversubscribed: never pin
	f(PinOff, 2, 8, nil)
	f(PinOn, 3, 2, []int{0, 1, 0})
	f(PinAuto, 0, 2, nil)
}

func TestUsableCPUsOnThisMachine(t *testing.T) {
	if cpus := usableCPUs(0); len(cpus) == 0 {
		t.Fatal("no usable CPUs found with sched_getaffinity")
	}
}
