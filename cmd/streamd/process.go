package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// startCPUProfile starts writing a CPU profile to path. It returns the
// function that stops it, or, when it cannot start, prints why (prefixed
// with cmd) and returns false: the command exits 1.
func startCPUProfile(path, cmd string, stderr io.Writer) (stop func(), ok bool) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot create the CPU profile: %v\n", cmd, err)
		return nil, false
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintf(stderr, "%s: cannot start the CPU profile: %v\n", cmd, err)
		return nil, false
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, true
}

// onSignals calls first on the first SIGINT or SIGTERM (a graceful stop:
// a final checkpoint, committed output) and exits at once with
// exitSignal on the second, after calling last (nil: nothing). The
// returned function stops listening (the goroutine stays parked, as the
// process is about to exit).
func onSignals(first func(sig os.Signal), last func()) (release func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		first(<-sigs)
		<-sigs
		if last != nil {
			last()
		}
		os.Exit(exitSignal)
	}()
	return func() { signal.Stop(sigs) }
}
