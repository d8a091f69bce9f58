package coord

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// epoch is time zero of the scripted tests; times print as offsets from it.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(epoch).String()
}

// TestDataDriven runs the scripts in testdata/. Commands:
//
//	new tasks=3 interval=100ms [timeout=1s] [min_pause=0s] [max_concurrent=1]
//	    [tolerable=0] [first_id=1] [mode=at_least_once]   (time is 0)
//	tick t=100ms
//	ack task=1 id=5 [t=..]              (also: ack tasks=(1,2,3) id=5)
//	decline task=2 id=5 reason=error [err=disk-full] [t=..]
//	persisted id=5 [t=..]
//	persist-failed id=5 [err=..] [t=..]
//	task-failed task=1 [err=..] [t=..]
//	trigger-now [savepoint] [t=..]
//	trigger-final [savepoint] [t=..]
//	stop [t=..]
//	ready [advance=false]               prints the Ready, then Advances it
//	advance                             Advances the Ready held by ready advance=false
//	status                              prints String()
//	stats [history]                     prints Stats
//
// Events print "ok" or the error. Omitted t= means the latest time used.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var (
			c    *Coordinator
			now  = epoch
			held *Ready
		)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "new" && c == nil {
				d.Fatalf(t, "%s before new", d.Cmd)
			}
			if arg, ok := d.Arg("t"); ok {
				dur, err := time.ParseDuration(arg.SingleVal(t))
				if err != nil {
					d.Fatalf(t, "t: %v", err)
				}
				now = epoch.Add(dur)
			}
			step := func(e Event) string {
				if err := c.Step(now, e); err != nil {
					return "error: " + err.Error() + "\n"
				}
				return "ok\n"
			}
			errArg := func(def string) error {
				s := def
				d.MaybeScanArgs(t, "err", &s)
				if s == "" {
					return nil
				}
				return errors.New(s)
			}
			switch d.Cmd {
			case "new":
				var (
					opts    Options
					ntasks  = 1
					firstID = uint64(1)
				)
				d.MaybeScanArgs(t, "tasks", &ntasks)
				d.MaybeScanArgs(t, "first_id", &firstID)
				d.MaybeScanArgs(t, "max_concurrent", &opts.MaxConcurrent)
				d.MaybeScanArgs(t, "tolerable", &opts.TolerableFailures)
				for _, f := range []struct {
					key string
					dst *time.Duration
				}{{"interval", &opts.Interval}, {"timeout", &opts.Timeout}, {"min_pause", &opts.MinPause}} {
					if arg, ok := d.Arg(f.key); ok {
						v, err := time.ParseDuration(arg.SingleVal(t))
						if err != nil {
							d.Fatalf(t, "%s: %v", f.key, err)
						}
						*f.dst = v
					}
				}
				if arg, ok := d.Arg("mode"); ok {
					switch arg.SingleVal(t) {
					case "exactly_once":
						opts.Mode = ExactlyOnce
					case "at_least_once":
						opts.Mode = AtLeastOnce
					default:
						d.Fatalf(t, "bad mode %q", arg.SingleVal(t))
					}
				}
				if err := opts.Validate(); err != nil {
					return "error: " + err.Error() + "\n"
				}
				tasks := make([]TaskID, ntasks)
				for i := range tasks {
					tasks[i] = TaskID(i + 1)
				}
				now, held = epoch, nil
				c = New(opts, tasks, firstID, now)
				return c.String() + "\n"
			case "tick":
				c.Tick(now)
				return "ok\n"
			case "ack":
				var id uint64
				d.ScanArgs(t, "id", &id)
				var out strings.Builder
				if arg, ok := d.Arg("tasks"); ok {
					for _, v := range arg.Vals {
						task, err := strconv.Atoi(v)
						if err != nil {
							d.Fatalf(t, "tasks: %v", err)
						}
						out.WriteString(step(Ack{Task: TaskID(task), ID: id}))
					}
					return out.String()
				}
				var task int
				d.ScanArgs(t, "task", &task)
				return step(Ack{Task: TaskID(task), ID: id})
			case "decline":
				var (
					task   int
					id     uint64
					reason string
				)
				d.ScanArgs(t, "task", &task)
				d.ScanArgs(t, "id", &id)
				d.ScanArgs(t, "reason", &reason)
				r := DeclineReason(0)
				for cand := ReasonSubsumed; cand <= ReasonError; cand++ {
					if cand.String() == reason {
						r = cand
					}
				}
				if reason == "invalid" {
					r = 99
				} else if r == 0 {
					d.Fatalf(t, "bad reason %q", reason)
				}
				return step(Decline{Task: TaskID(task), ID: id, Reason: r, Err: errArg("")})
			case "persisted":
				var id uint64
				d.ScanArgs(t, "id", &id)
				return step(Persisted{ID: id})
			case "persist-failed":
				var id uint64
				d.ScanArgs(t, "id", &id)
				return step(PersistFailed{ID: id, Err: errArg("fsync: input/output error")})
			case "task-failed":
				var task int
				d.ScanArgs(t, "task", &task)
				return step(TaskFailed{Task: TaskID(task), Err: errArg("boom")})
			case "trigger-now":
				return step(TriggerNow{Savepoint: d.HasArg("savepoint")})
			case "trigger-final":
				return step(TriggerFinal{Savepoint: d.HasArg("savepoint")})
			case "stop":
				return step(Stop{})
			case "ready":
				if !c.HasReady() {
					if rd := c.Ready(); !isZeroReady(rd) {
						t.Fatalf("HasReady is false but Ready returned %+v", rd)
					}
					return "<none>\n"
				}
				rd := c.Ready()
				advance := true
				d.MaybeScanArgs(t, "advance", &advance)
				if advance {
					c.Advance(rd)
				} else {
					held = &rd
				}
				return formatReady(rd)
			case "advance":
				if held == nil {
					d.Fatalf(t, "advance without ready advance=false")
				}
				c.Advance(*held)
				held = nil
				return "ok\n"
			case "status":
				return c.String() + "\n"
			case "stats":
				return formatStats(c.Stats(), d.HasArg("history"))
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
				return ""
			}
		})
	})
}

func isZeroReady(rd Ready) bool {
	return len(rd.Persist) == 0 && len(rd.Trigger) == 0 && len(rd.Complete) == 0 &&
		len(rd.Aborted) == 0 && !rd.FinalComplete && rd.Failed == nil
}

func final(f bool) string {
	if f {
		return " final"
	}
	return ""
}

// kind prints how a checkpoint was asked for.
func kind(onDemand, savepoint bool) string {
	switch {
	case savepoint && onDemand:
		return " on-demand savepoint"
	case savepoint:
		return " savepoint"
	case onDemand:
		return " on-demand"
	}
	return ""
}

func formatReady(rd Ready) string {
	var b strings.Builder
	for _, p := range rd.Persist {
		fmt.Fprintf(&b, "persist %d (triggered %s)%s\n", p.ID, at(p.TriggeredAt), final(p.Final))
	}
	for _, p := range rd.Trigger {
		fmt.Fprintf(&b, "trigger %d at %s%s%s\n", p.ID, at(p.At), final(p.Final), kind(p.OnDemand, p.Savepoint))
	}
	for _, p := range rd.Complete {
		fmt.Fprintf(&b, "complete %d (triggered %s, completed %s)%s\n",
			p.ID, at(p.TriggeredAt), at(p.CompletedAt), final(p.Final))
	}
	for _, p := range rd.Aborted {
		fmt.Fprintf(&b, "abort %d %v at %s (triggered %s)%s", p.ID, p.Reason, at(p.At), at(p.TriggeredAt), final(p.Final))
		if p.Err != nil {
			fmt.Fprintf(&b, ": %v", p.Err)
		}
		b.WriteByte('\n')
	}
	if rd.FinalComplete {
		b.WriteString("final-complete\n")
	}
	if rd.Failed != nil {
		fmt.Fprintf(&b, "failed: %v\n", rd.Failed)
	}
	return b.String()
}

func formatStats(s Stats, history bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tasks=%d triggered=%d completed=%d failed=%d aborted=%d in-flight=%d\n",
		s.Tasks, s.Triggered, s.Completed, s.Failed, s.Aborted, s.InFlight)
	fmt.Fprintf(&b, "consecutive-failures=%d latest-completed=%d", s.ConsecutiveFailures, s.LatestCompletedID)
	if s.FailedOnDemand > 0 {
		fmt.Fprintf(&b, " failed-on-demand=%d", s.FailedOnDemand)
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "ignored: late-acks=%d duplicate-acks=%d declines=%d persisted=%d\n",
		s.IgnoredLateAcks, s.IgnoredDuplicateAcks, s.IgnoredDeclines, s.IgnoredPersisted)
	if history {
		for _, h := range s.History {
			fmt.Fprintf(&b, "  %d %v%s%s triggered=%s ended=%s acks=%d", h.ID, h.Status, final(h.Final),
				kind(h.OnDemand, h.Savepoint), at(h.TriggeredAt), at(h.EndedAt), h.Acks)
			if h.Status == StatusAborted {
				fmt.Fprintf(&b, " reason=%v", h.AbortReason)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}
