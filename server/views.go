package server

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/streamd/streamd/engine"
)

// The JSON the API returns. Timestamps are integer milliseconds since the
// epoch and durations milliseconds as numbers (fractional: streamd's sync
// pauses are microseconds), sizes bytes: Flink's units and, where Flink
// has the field, Flink's names.

type jobSummaryJSON struct {
	ID                   string `json:"id"`
	Name                 string `json:"name"`
	Status               string `json:"status"`
	StartTime            int64  `json:"start_time"`
	EndTime              int64  `json:"end_time"`
	Duration             int64  `json:"duration"`
	Restarts             int    `json:"restarts"`
	CheckpointsCompleted int    `json:"checkpoints_completed"`
	LastCheckpointID     uint64 `json:"last_checkpoint_id"`
}

type failureJSON struct {
	Time      int64  `json:"time"`
	Message   string `json:"message"`
	Restarted bool   `json:"restarted"`
}

type rateJSON struct {
	RecordsIn           int64   `json:"records_in"`
	RecordsOut          int64   `json:"records_out"`
	RecordsInPerSecond  float64 `json:"records_in_per_second"`
	RecordsOutPerSecond float64 `json:"records_out_per_second"`
}

type operatorJSON struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
	rateJSON
}

type taskJSON struct {
	Index int `json:"index"`
	rateJSON
	// Backpressure is the share of the last interval the task spent
	// blocked on a full output ring; Idle on empty inputs.
	Backpressure float64 `json:"backpressure"`
	Idle         float64 `json:"idle"`
	// WatermarkMs is the task's event-time watermark (null before its
	// first); a vertex's is the lowest of its tasks'.
	WatermarkMs *int64 `json:"watermark_ms"`
}

type vertexJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Parallelism int    `json:"parallelism"`
	rateJSON
	Backpressure float64        `json:"backpressure"` // the highest of its tasks
	WatermarkMs  *int64         `json:"watermark_ms"` // the lowest of its tasks' (null: one has none yet)
	Operators    []operatorJSON `json:"operators"`
	Tasks        []taskJSON     `json:"tasks"`
}

type edgeJSON struct {
	From             string  `json:"from"`
	To               string  `json:"to"`
	Partitioning     string  `json:"partitioning"`
	RecordsPerSecond float64 `json:"records_per_second"`
	Backpressure     float64 `json:"backpressure"` // of the producing vertex
	Occupancy        float64 `json:"occupancy"`    // queued records / ring slots
	OccupiedSlots    int64   `json:"occupied_slots"`
	CapacitySlots    int64   `json:"capacity_slots"`
}

type savepointJSON struct {
	CheckpointID uint64 `json:"checkpoint_id"`
	Path         string `json:"path"`
	Timestamp    int64  `json:"timestamp"`
	StateSize    int64  `json:"state_size"`
}

type jobDetailJSON struct {
	jobSummaryJSON
	Parallelism     int             `json:"parallelism"`
	RestartStrategy string          `json:"restart_strategy"`
	Failures        []failureJSON   `json:"failures"`
	Vertices        []vertexJSON    `json:"vertices"`
	Edges           []edgeJSON      `json:"edges"`
	Savepoints      []savepointJSON `json:"savepoints"`
}

func savepointView(sp engine.Savepoint) savepointJSON {
	return savepointJSON{CheckpointID: sp.CheckpointID, Path: sp.Path, Timestamp: ms(sp.TakenAt), StateSize: sp.StateBytes}
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func durMs(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func (j *managedJob) summaryLocked() jobSummaryJSON {
	s := jobSummaryJSON{ID: j.id, Name: j.plan.Spec.Name, Status: j.mu.status, StartTime: ms(j.mu.startTime),
		EndTime: ms(j.mu.endTime), Restarts: j.mu.restarts, CheckpointsCompleted: j.mu.counts.completed}
	end := j.mu.endTime
	if end.IsZero() {
		end = time.Now()
	}
	if !j.mu.startTime.IsZero() {
		s.Duration = end.Sub(j.mu.startTime).Milliseconds()
	}
	for i := len(j.mu.history) - 1; i >= 0; i-- {
		if h := j.mu.history[i].stats; h.Status == "completed" {
			s.LastCheckpointID = h.ID
			break
		}
	}
	return s
}

func (j *managedJob) summary() jobSummaryJSON {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.summaryLocked()
}

func (j *managedJob) detail() jobDetailJSON {
	j.mu.Lock()
	defer j.mu.Unlock()
	d := jobDetailJSON{jobSummaryJSON: j.summaryLocked(), Parallelism: j.plan.Spec.Parallelism,
		RestartStrategy: j.plan.Spec.Restart.Strategy, Failures: []failureJSON{}, Savepoints: []savepointJSON{}}
	for _, f := range j.mu.failures {
		d.Failures = append(d.Failures, failureJSON{Time: ms(f.Time), Message: f.Message, Restarted: f.Restarted})
	}
	for _, sp := range j.mu.savepoints {
		d.Savepoints = append(d.Savepoints, savepointView(sp))
	}
	var prev *engine.Metrics
	if j.mu.prevLast {
		prev = &j.mu.prev
	}
	d.Vertices, d.Edges = graphJSON(prev, &j.mu.last)
	return d
}

// graphJSON builds the vertices and edges of a job from its newest
// counters, with rates over the interval since prev (nil: no rates yet).
func graphJSON(prev, last *engine.Metrics) ([]vertexJSON, []edgeJSON) {
	vertices := []vertexJSON{}
	edges := []edgeJSON{}
	ids := map[string]int{}
	secs := 0.0
	if prev != nil {
		secs = last.At.Sub(prev.At).Seconds()
	}
	prevTask := map[string]*engine.TaskMetrics{}
	if prev != nil {
		for i := range prev.Tasks {
			t := &prev.Tasks[i]
			prevTask[t.Vertex+"#"+strconv.Itoa(t.Index)] = t
		}
	}
	rate := func(now, before int64) float64 {
		if secs <= 0 || now < before {
			return 0
		}
		return float64(now-before) / secs
	}
	share := func(now, before int64) float64 {
		if secs <= 0 || now < before {
			return 0
		}
		return math.Min(1, float64(now-before)/1e9/secs)
	}
	for _, t := range last.Tasks {
		vi, ok := ids[t.Vertex]
		if !ok {
			vi = len(vertices)
			ids[t.Vertex] = vi
			v := vertexJSON{ID: "v" + strconv.Itoa(vi), Name: t.Vertex, Parallelism: t.Parallelism}
			for _, op := range t.Operators {
				v.Operators = append(v.Operators, operatorJSON{Name: op.Name, UID: op.UID})
			}
			vertices = append(vertices, v)
		}
		v := &vertices[vi]
		p := prevTask[t.Vertex+"#"+strconv.Itoa(t.Index)]
		tj := taskJSON{Index: t.Index}
		for oi, op := range t.Operators {
			var before engine.OperatorMetrics
			if p != nil && oi < len(p.Operators) {
				before = p.Operators[oi]
			}
			r := rateJSON{RecordsIn: op.RecordsIn, RecordsOut: op.RecordsOut,
				RecordsInPerSecond: rate(op.RecordsIn, before.RecordsIn), RecordsOutPerSecond: rate(op.RecordsOut, before.RecordsOut)}
			if oi < len(v.Operators) {
				o := &v.Operators[oi].rateJSON
				o.RecordsIn += r.RecordsIn
				o.RecordsOut += r.RecordsOut
				o.RecordsInPerSecond += r.RecordsInPerSecond
				o.RecordsOutPerSecond += r.RecordsOutPerSecond
			}
			if oi == 0 {
				tj.RecordsIn, tj.RecordsInPerSecond = r.RecordsIn, r.RecordsInPerSecond
			}
			if oi == len(t.Operators)-1 {
				tj.RecordsOut, tj.RecordsOutPerSecond = r.RecordsOut, r.RecordsOutPerSecond
			}
		}
		if p != nil {
			tj.Backpressure = share(t.BackpressuredNs, p.BackpressuredNs)
			tj.Idle = share(t.IdleNs, p.IdleNs)
		}
		tj.WatermarkMs = t.Watermark
		v.Tasks = append(v.Tasks, tj)
		v.RecordsIn += tj.RecordsIn
		v.RecordsOut += tj.RecordsOut
		v.RecordsInPerSecond += tj.RecordsInPerSecond
		v.RecordsOutPerSecond += tj.RecordsOutPerSecond
		v.Backpressure = math.Max(v.Backpressure, tj.Backpressure)
	}
	for i := range vertices {
		v := &vertices[i]
		for k, tj := range v.Tasks {
			if tj.WatermarkMs == nil {
				v.WatermarkMs = nil
				break
			}
			if k == 0 || *tj.WatermarkMs < *v.WatermarkMs {
				v.WatermarkMs = tj.WatermarkMs
			}
		}
	}
	for _, e := range last.Edges {
		fi, ok1 := ids[e.From]
		ti, ok2 := ids[e.To]
		if !ok1 || !ok2 {
			continue
		}
		ej := edgeJSON{From: vertices[fi].ID, To: vertices[ti].ID, Partitioning: e.Partitioning,
			RecordsPerSecond: vertices[fi].RecordsOutPerSecond, Backpressure: vertices[fi].Backpressure,
			OccupiedSlots: e.OccupiedSlots, CapacitySlots: e.CapacitySlots}
		if e.CapacitySlots > 0 {
			ej.Occupancy = float64(e.OccupiedSlots) / float64(e.CapacitySlots)
		}
		edges = append(edges, ej)
	}
	return vertices, edges
}

// Checkpoint statistics, modelled on Flink's /jobs/:jobid/checkpoints.

type ckptTaskJSON struct {
	Vertex            string  `json:"vertex"`
	Index             int     `json:"index"`
	SyncDuration      float64 `json:"sync_duration"`
	AsyncDuration     float64 `json:"async_duration"`
	AlignmentDuration float64 `json:"alignment_duration"`
	StartDelay        float64 `json:"start_delay"`
	StateSize         int64   `json:"state_size"`
	CheckpointedSize  int64   `json:"checkpointed_size"`
}

type ckptJSON struct {
	ID                 uint64  `json:"id"`
	Status             string  `json:"status"` // COMPLETED, FAILED, IN_PROGRESS
	IsSavepoint        bool    `json:"is_savepoint"`
	TriggerTimestamp   int64   `json:"trigger_timestamp"`
	LatestAckTimestamp int64   `json:"latest_ack_timestamp"`
	EndToEndDuration   float64 `json:"end_to_end_duration"`
	StateSize          int64   `json:"state_size"`
	CheckpointedSize   int64   `json:"checkpointed_size"`
	// Incremental checkpoints (engine.KeyedCheckpointStats): whether
	// some key group was written as a delta, and how many key groups
	// were written as deltas, in full, or reused unchanged.
	IsIncremental           bool   `json:"is_incremental"`
	DeltaKeyGroups          int    `json:"delta_key_groups"`
	FullKeyGroups           int    `json:"full_key_groups"`
	ReusedKeyGroups         int    `json:"reused_key_groups"`
	MaxDeltaChain           int    `json:"max_delta_chain"`
	NumSubtasks             int    `json:"num_subtasks"`
	NumAcknowledgedSubtasks int    `json:"num_acknowledged_subtasks"`
	FailureMessage          string `json:"failure_message,omitempty"`
	ExternalPath            string `json:"external_path,omitempty"`
	// The highest over the checkpoint's tasks.
	SyncDuration      float64        `json:"sync_duration"`
	AsyncDuration     float64        `json:"async_duration"`
	AlignmentDuration float64        `json:"alignment_duration"`
	StartDelay        float64        `json:"start_delay"`
	Final             bool           `json:"final"`
	Attempt           int            `json:"attempt"`
	Tasks             []ckptTaskJSON `json:"tasks"`
}

type restoredJSON struct {
	ID               uint64 `json:"id"`
	RestoreTimestamp int64  `json:"restore_timestamp"`
	IsSavepoint      bool   `json:"is_savepoint"`
	ExternalPath     string `json:"external_path,omitempty"`
}

type statJSON struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	Avg float64 `json:"avg"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

type countsJSON struct {
	Triggered  int `json:"triggered"`
	InProgress int `json:"in_progress"`
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
	Restored   int `json:"restored"`
}

type checkpointsJSON struct {
	Counts countsJSON `json:"counts"`
	Latest struct {
		Completed *ckptJSON     `json:"completed"`
		Failed    *ckptJSON     `json:"failed"`
		Savepoint *ckptJSON     `json:"savepoint"`
		Restored  *restoredJSON `json:"restored"`
	} `json:"latest"`
	// History lists the newest checkpoints first: the in-progress ones,
	// then up to historyLen completed or failed.
	History []ckptJSON          `json:"history"`
	Summary map[string]statJSON `json:"summary"`
}

// historyLen is the number of checkpoints GET …/checkpoints lists
// (Flink's web.checkpoints.history is 10; streamd's are cheaper to keep).
const historyLen = 100

func ckptFromStats(e ckptEntry) ckptJSON {
	s := e.stats
	c := ckptJSON{ID: s.ID, Status: "COMPLETED", IsSavepoint: s.Savepoint, TriggerTimestamp: ms(s.TriggeredAt),
		EndToEndDuration: durMs(s.Duration), StateSize: s.StateSize, CheckpointedSize: s.CheckpointedSize,
		IsIncremental: s.Incremental, DeltaKeyGroups: s.DeltaKeyGroups, FullKeyGroups: s.FullKeyGroups,
		ReusedKeyGroups: s.ReusedKeyGroups, MaxDeltaChain: s.MaxDeltaChain,
		NumSubtasks: len(s.Tasks), NumAcknowledgedSubtasks: len(s.Tasks), ExternalPath: s.SavepointPath,
		Final: s.Final, Attempt: e.attempt, Tasks: []ckptTaskJSON{}}
	if s.Status != "completed" {
		c.Status = "FAILED"
		c.FailureMessage = s.Reason
	}
	if !s.TriggeredAt.IsZero() {
		c.LatestAckTimestamp = s.TriggeredAt.Add(s.Duration).UnixMilli()
	}
	for _, t := range s.Tasks {
		tj := ckptTaskJSON{Vertex: t.Vertex, Index: t.Index, SyncDuration: durMs(t.SyncPause), AsyncDuration: durMs(t.Async),
			AlignmentDuration: durMs(t.Alignment), StartDelay: durMs(t.StartDelay), StateSize: t.StateSize, CheckpointedSize: t.CheckpointedSize}
		c.Tasks = append(c.Tasks, tj)
		c.SyncDuration = math.Max(c.SyncDuration, tj.SyncDuration)
		c.AsyncDuration = math.Max(c.AsyncDuration, tj.AsyncDuration)
		c.AlignmentDuration = math.Max(c.AlignmentDuration, tj.AlignmentDuration)
		c.StartDelay = math.Max(c.StartDelay, tj.StartDelay)
	}
	return c
}

func (j *managedJob) checkpoints() checkpointsJSON {
	j.mu.Lock()
	cur := j.mu.cur
	j.mu.Unlock()
	var ov engine.CheckpointOverview
	if cur != nil {
		ov = cur.CheckpointOverview()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if cur != nil && cur == j.mu.cur {
		j.noteRestoreLocked(ov)
	}
	var out checkpointsJSON
	out.History = []ckptJSON{}
	out.Counts = countsJSON{Completed: j.mu.counts.completed, Failed: j.mu.counts.failed, Restored: j.mu.counts.restored}
	for _, p := range ov.InProgress {
		c := ckptJSON{ID: p.ID, Status: "IN_PROGRESS", IsSavepoint: p.Savepoint, TriggerTimestamp: ms(p.TriggeredAt),
			EndToEndDuration: durMs(time.Since(p.TriggeredAt)), NumSubtasks: p.Tasks, NumAcknowledgedSubtasks: p.Acks,
			Attempt: j.mu.attempt, Tasks: []ckptTaskJSON{}}
		out.History = append(out.History, c)
	}
	out.Counts.InProgress = len(ov.InProgress)
	out.Counts.Triggered = out.Counts.Completed + out.Counts.Failed + out.Counts.InProgress

	series := map[string][]float64{}
	for i := len(j.mu.history) - 1; i >= 0; i-- {
		e := j.mu.history[i]
		c := ckptFromStats(e)
		if len(out.History) < historyLen+len(ov.InProgress) {
			out.History = append(out.History, c)
		}
		switch {
		case c.Status == "FAILED" && out.Latest.Failed == nil:
			out.Latest.Failed = &c
		case c.Status == "COMPLETED":
			if out.Latest.Completed == nil {
				out.Latest.Completed = &c
			}
			if c.IsSavepoint && out.Latest.Savepoint == nil {
				out.Latest.Savepoint = &c
			}
			series["end_to_end_duration"] = append(series["end_to_end_duration"], c.EndToEndDuration)
			series["state_size"] = append(series["state_size"], float64(c.StateSize))
			series["checkpointed_size"] = append(series["checkpointed_size"], float64(c.CheckpointedSize))
			// A checkpoint's phases are its slowest task's (as in the
			// history), so the summary is over the same numbers.
			series["sync_duration"] = append(series["sync_duration"], c.SyncDuration)
			series["async_duration"] = append(series["async_duration"], c.AsyncDuration)
			series["alignment_duration"] = append(series["alignment_duration"], c.AlignmentDuration)
			series["start_delay"] = append(series["start_delay"], c.StartDelay)
		}
	}
	if r := j.mu.restored; r != nil {
		out.Latest.Restored = &restoredJSON{ID: r.ID, RestoreTimestamp: ms(r.At), IsSavepoint: r.Savepoint != "", ExternalPath: r.Savepoint}
	}
	out.Summary = map[string]statJSON{}
	for _, k := range []string{"end_to_end_duration", "state_size", "checkpointed_size", "sync_duration", "async_duration", "alignment_duration", "start_delay"} {
		out.Summary[k] = summarize(series[k])
	}
	return out
}

// summarize returns min, max, mean and nearest-rank percentiles of xs.
func summarize(xs []float64) statJSON {
	if len(xs) == 0 {
		return statJSON{}
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return statJSON{Min: s[0], Max: s[len(s)-1], Avg: sum / float64(len(s)), P50: q(0.5), P90: q(0.9), P99: q(0.99)}
}
