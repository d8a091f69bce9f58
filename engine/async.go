package engine

import (
	"fmt"
	"time"

	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/snapshot"
)

type asyncJob struct {
	task *task
	snap interface {
		snapshot.View
		Release()
	}
	prev *snapshot.KeyedHandle
	// durable is the sink's asynchronous pre-commit, nil if none.
	durable func() error
	ev      event
}

// asyncWorker runs the asynchronous phase of task snapshots.
func (rt *jobRuntime) asyncWorker() {
	for aj := range rt.async {
		start := time.Now()
		t := aj.task
		ev := aj.ev
		if aj.durable != nil {
			if err := aj.durable(); err != nil {
				err = fmt.Errorf("%s: cannot make the sink's transaction of checkpoint %d durable: %w", t, ev.id, err)
				if aj.snap != nil {
					aj.snap.Release()
				}
				rt.send(event{kind: evFatal, task: t.id, id: ev.id, err: err})
				continue
			}
		}
		if aj.snap != nil {
			h, err := rt.store.WriteKeyed(rt.job.name, ev.id, t.v.name, t.kgRange.Start, t.kgRange.End, aj.snap, aj.prev)
			aj.snap.Release()
			if err != nil {
				rt.opts.Logger("streamd: %s: checkpoint %d: %v", t, ev.id, err)
				rt.send(event{kind: evDecline, task: t.id, id: ev.id, reason: coord.ReasonError, err: err})
				continue
			}
			ev.meta.Keyed = h
			ev.stats.RawBytes, ev.stats.StoredBytes = h.RawBytes, h.StoredBytes
		}
		ev.stats.Async = time.Since(start)
		rt.send(ev)
	}
}
