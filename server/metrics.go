package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/streamd/streamd/engine"
)

// Prometheus metrics, from github.com/prometheus/client_golang: the
// reference implementation, whose Collector interface lets the daemon read
// the engine's per-task counters at scrape time (const metrics), so the
// record path never calls into a metrics library; VictoriaMetrics/metrics
// registers metrics by name strings and has no per-scrape collector of
// labelled series that come and go with jobs.
//
// Counters of records and blocked time are per attempt: a restarted job's
// counters start again from zero, which Prometheus' rate() treats as a
// counter reset.

const namespace = "streamd"

// checkpointBuckets are the histogram buckets of checkpoint durations, in
// seconds: 50 µs to 60 s (streamd's sync pause is tens of microseconds,
// an end-to-end checkpoint milliseconds to seconds).
var checkpointBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

type promMetrics struct {
	registry    *prometheus.Registry
	restarts    *prometheus.CounterVec
	failures    *prometheus.CounterVec
	checkpoints *prometheus.CounterVec
	endToEnd    *prometheus.HistogramVec
	phase       *prometheus.HistogramVec
	lastSize    *prometheus.GaugeVec
	lastStored  *prometheus.GaugeVec
}

func newPromMetrics() *promMetrics {
	p := &promMetrics{registry: prometheus.NewRegistry()}
	p.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "job_restarts_total",
		Help: "Restarts of a job by its restart strategy."}, []string{"job"})
	p.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "job_failures_total",
		Help: "Failures of a job (restarted or not)."}, []string{"job"})
	p.checkpoints = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "checkpoints_total",
		Help: "Checkpoints that completed or failed."}, []string{"job", "status"})
	p.endToEnd = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "checkpoint_end_to_end_duration_seconds",
		Help: "Time from a completed checkpoint's trigger to its completion.", Buckets: checkpointBuckets}, []string{"job"})
	p.phase = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "checkpoint_task_duration_seconds",
		Help:    "Per task and completed checkpoint: sync (the pause of the task), async (encode, compress, write), alignment, start_delay.",
		Buckets: checkpointBuckets}, []string{"job", "phase"})
	p.lastSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "checkpoint_last_state_size_bytes",
		Help: "State size of the newest completed checkpoint: the stored bytes it references (full images and delta chains, its own writes included)."}, []string{"job"})
	p.lastStored = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "checkpoint_last_checkpointed_size_bytes",
		Help: "Bytes the newest completed checkpoint wrote (compressed; deltas and full images it wrote, not what it references)."}, []string{"job"})
	p.registry.MustRegister(p.restarts, p.failures, p.checkpoints, p.endToEnd, p.phase, p.lastSize, p.lastStored,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return p
}

func (p *promMetrics) observeCheckpoint(job string, s engine.CheckpointStats) {
	if s.Status != "completed" {
		p.checkpoints.WithLabelValues(job, "failed").Inc()
		return
	}
	p.checkpoints.WithLabelValues(job, "completed").Inc()
	p.endToEnd.WithLabelValues(job).Observe(s.Duration.Seconds())
	for _, t := range s.Tasks {
		p.phase.WithLabelValues(job, "sync").Observe(t.SyncPause.Seconds())
		p.phase.WithLabelValues(job, "async").Observe(t.Async.Seconds())
		p.phase.WithLabelValues(job, "alignment").Observe(t.Alignment.Seconds())
		p.phase.WithLabelValues(job, "start_delay").Observe(t.StartDelay.Seconds())
	}
	p.lastSize.WithLabelValues(job).Set(float64(s.StateSize))
	p.lastStored.WithLabelValues(job).Set(float64(s.CheckpointedSize))
}

// jobCollector reads the jobs' engine counters at scrape time.
type jobCollector struct {
	m *Manager

	recordsIn, recordsOut, blocked, idle, watermark, late, occupied, capacity, up *prometheus.Desc
}

func newJobCollector(m *Manager) *jobCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &jobCollector{m: m,
		recordsIn:  d("operator_records_in_total", "Records an operator task received (a source: read).", "job", "operator", "task"),
		recordsOut: d("operator_records_out_total", "Records an operator task emitted (a sink: wrote).", "job", "operator", "task"),
		blocked:    d("task_backpressured_seconds_total", "Time a task spent blocked on a full output ring.", "job", "vertex", "task"),
		idle:       d("task_idle_seconds_total", "Time a task spent waiting on empty inputs.", "job", "vertex", "task"),
		late:       d("operator_late_records_total", "Records a window or join step dropped because their window had fired (beyond its allowed lateness).", "job", "operator"),
		watermark:  d("task_watermark_milliseconds", "A task's current event-time watermark, ms since the epoch (absent before its first watermark).", "job", "vertex", "task"),
		occupied:   d("edge_ring_occupied_slots", "Records queued in the rings of an edge between two vertices.", "job", "from", "to"),
		capacity:   d("edge_ring_capacity_slots", "Slots of the rings of an edge.", "job", "from", "to"),
		up:         d("job_running", "1 while the job runs, 0 otherwise (labelled with its status).", "job", "status"),
	}
}

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.recordsIn, c.recordsOut, c.blocked, c.idle, c.watermark, c.late, c.occupied, c.capacity, c.up} {
		ch <- d
	}
}

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	for _, j := range c.m.List() {
		j.mu.Lock()
		cur, status, late := j.mu.cur, j.mu.status, j.mu.late
		j.mu.Unlock()
		running := 0.0
		if status == StatusRunning {
			running = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, running, j.id, status)
		if cur == nil {
			continue
		}
		if late != nil {
			for op, n := range late() {
				ch <- prometheus.MustNewConstMetric(c.late, prometheus.CounterValue, float64(n), j.id, op)
			}
		}
		m := cur.Metrics()
		for _, t := range m.Tasks {
			task := strconv.Itoa(t.Index)
			for _, op := range t.Operators {
				ch <- prometheus.MustNewConstMetric(c.recordsIn, prometheus.CounterValue, float64(op.RecordsIn), j.id, op.Name, task)
				ch <- prometheus.MustNewConstMetric(c.recordsOut, prometheus.CounterValue, float64(op.RecordsOut), j.id, op.Name, task)
			}
			ch <- prometheus.MustNewConstMetric(c.blocked, prometheus.CounterValue, float64(t.BackpressuredNs)/1e9, j.id, t.Vertex, task)
			ch <- prometheus.MustNewConstMetric(c.idle, prometheus.CounterValue, float64(t.IdleNs)/1e9, j.id, t.Vertex, task)
			if t.Watermark != nil {
				ch <- prometheus.MustNewConstMetric(c.watermark, prometheus.GaugeValue, float64(*t.Watermark), j.id, t.Vertex, task)
			}
		}
		for _, e := range m.Edges {
			ch <- prometheus.MustNewConstMetric(c.occupied, prometheus.GaugeValue, float64(e.OccupiedSlots), j.id, e.From, e.To)
			ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(e.CapacitySlots), j.id, e.From, e.To)
		}
	}
}
