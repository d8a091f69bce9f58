package engine

import (
	"errors"
	"fmt"
)

// checkSinkCommits compares what each sink says it committed
// (CommitReporter) with the checkpoint the job restores (rt.restored, nil
// for none), before any sink is recovered: a sink ahead of it means the
// store lost a completed checkpoint or belongs to other output, and
// running would duplicate committed output (DESIGN durability rule 3).
// With Options.AllowDuplicateOutput the mismatch is logged and the job
// goes on.
func (rt *jobRuntime) checkSinkCommits() error {
	var restored uint64
	if rt.restored != nil {
		restored = rt.restored.CheckpointID
	}
	var errs []error
	for _, v := range rt.vertices {
		tail := v.tail()
		if tail.kind != kindSinkNode {
			continue
		}
		committed, ok, err := tail.sink.lastCommitted()
		if !ok {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("engine: job %q: cannot tell what sink %q committed: %w", rt.job.name, tail.name, err))
			continue
		}
		if committed <= restored {
			continue
		}
		ahead := &SinkAheadError{Job: rt.job.name, Sink: tail.name, Committed: committed, Restored: restored}
		if rt.opts.AllowDuplicateOutput {
			rt.opts.Logger("streamd: WARNING: %v — going on because duplicates are allowed", ahead)
			continue
		}
		errs = append(errs, ahead)
	}
	return errors.Join(errs...)
}

// closeSinks calls every sink's Close (io.Closer) once the run has ended.
func (rt *jobRuntime) closeSinks() error {
	var errs []error
	for _, v := range rt.vertices {
		if tail := v.tail(); tail.kind == kindSinkNode {
			if err := tail.sink.close(); err != nil {
				errs = append(errs, fmt.Errorf("engine: cannot close sink %q: %w", tail.name, err))
			}
		}
	}
	return errors.Join(errs...)
}
