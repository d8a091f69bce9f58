package server

import (
	"testing"
	"time"

	"github.com/streamd/streamd/job"
)

func TestBackoffScripts(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	half := func() float64 { return 0.5 } // no jitter
	type step struct {
		at      time.Duration // since t0
		restart bool
		delay   time.Duration
	}
	f := func(name string, spec *job.RestartSpec, rnd func() float64, steps []step) {
		t.Helper()
		b := newBackoff(spec)
		for i, s := range steps {
			restart, delay := b.onFailure(t0.Add(s.at), rnd)
			if restart != s.restart || delay != s.delay {
				t.Errorf("%s: failure %d at %v: got (%v, %v), want (%v, %v)", name, i, s.at, restart, delay, s.restart, s.delay)
			}
		}
	}
	f("none", &job.RestartSpec{Strategy: job.RestartNone}, half, []step{{0, false, 0}})
	f("nil spec", nil, half, []step{{0, false, 0}})
	f("fixed", &job.RestartSpec{Strategy: job.RestartFixedDelay, Attempts: 2, Delay: 3 * time.Second}, half, []step{
		{0, true, 3 * time.Second}, {time.Hour, true, 3 * time.Second}, {2 * time.Hour, false, 0},
	})
	f("fixed zero attempts", &job.RestartSpec{Strategy: job.RestartFixedDelay, Attempts: 0}, half, []step{{0, false, 0}})
	exp := &job.RestartSpec{Strategy: job.RestartExponentialDelay, InitialBackoff: time.Second, MaxBackoff: 5 * time.Second,
		Multiplier: 2, ResetThreshold: time.Minute, AttemptsBeforeReset: 5}
	f("exponential", exp, half, []step{
		{0, true, time.Second},
		{2 * time.Second, true, 2 * time.Second},
		{5 * time.Second, true, 4 * time.Second},
		{10 * time.Second, true, 5 * time.Second}, // capped
		{16 * time.Second, true, 5 * time.Second},
		{22 * time.Second, false, 0}, // 5 attempts without a reset
	})
	f("exponential reset", exp, half, []step{
		{0, true, time.Second},
		{2 * time.Second, true, 2 * time.Second},
		{2*time.Second + time.Minute, true, time.Second}, // a minute without failure: start over
		{2*time.Second + time.Minute + time.Second, true, 2 * time.Second},
	})
	jit := *exp
	jit.JitterFactor = 0.1
	f("jitter low", &jit, func() float64 { return 0 }, []step{{0, true, 900 * time.Millisecond}})
	f("jitter high", &jit, func() float64 { return 0.75 }, []step{{0, true, 1050 * time.Millisecond}})
}

func TestBackoffDefaultsAreFlinks(t *testing.T) {
	spec, err := job.Parse("j.yaml", []byte("name: j\nsource: {type: sequence, count: 1, keys: 1}\nsink: {type: blackhole}\ncheckpointing: {interval: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := spec.Restart
	if r.Strategy != job.RestartExponentialDelay || r.InitialBackoff != time.Second || r.MaxBackoff != time.Minute ||
		r.Multiplier != 1.5 || r.ResetThreshold != time.Hour || r.JitterFactor != 0.1 {
		t.Fatalf("default restart strategy with checkpointing: %+v", r)
	}
	spec, err = job.Parse("j.yaml", []byte("name: j\nsource: {type: sequence, count: 1, keys: 1}\nsink: {type: blackhole}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Restart.Strategy != job.RestartNone {
		t.Fatalf("default restart strategy without checkpointing: %+v", spec.Restart)
	}
}
