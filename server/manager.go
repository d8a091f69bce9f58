package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/jobrun"
	"github.com/streamd/streamd/snapshot"
)

// Limits of the job manager.
const (
	// MaxJobs bounds the jobs the daemon knows (running or ended); a
	// submission beyond it is refused until jobs are deleted.
	MaxJobs = 256
	// maxFailures bounds the failures kept per job (the newest).
	maxFailures = 100
	// maxHistory bounds the checkpoint statistics kept per job (the
	// newest); the counts cover every checkpoint.
	maxHistory = 1000
	// sampleInterval is how often a running job's counters are read for
	// the rates of the API.
	sampleInterval = time.Second
)

// Job statuses, Flink's names.
const (
	StatusRunning    = "RUNNING"
	StatusRestarting = "RESTARTING"
	StatusFinished   = "FINISHED"
	StatusStopped    = "STOPPED"
	StatusCanceled   = "CANCELED"
	StatusFailed     = "FAILED"
)

// Errors of the manager, mapped to HTTP statuses by the API.
var (
	ErrNotFound = errors.New("server: no such job")
	ErrConflict = errors.New("server: conflict")
	ErrTooMany  = errors.New("server: too many jobs")
	ErrClosed   = errors.New("server: the daemon is shutting down")
)

// SpecError is a submitted spec that does not decode or compile: every
// problem, with lines.
type SpecError struct{ Err error }

func (e *SpecError) Error() string { return e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

// Options configures a Manager.
type Options struct {
	// DataDir holds the checkpoint store and the job registry. Required.
	DataDir string
	// Store is the data dir's checkpoint store, shared by every job.
	// Required.
	Store *snapshot.Store
	// Logger receives one line per event, with job (and checkpoint)
	// attributes. Default slog.Default().
	Logger *slog.Logger
	// Pinning is the pinning of every job's workers. Jobs share the
	// cores: each runs its own workers, and PinAuto pins only when the
	// cores suffice for the job that asks (see README, Daemon).
	Pinning engine.PinMode
	// Rand is the randomness of restart jitter. Default math/rand/v2.
	Rand func() float64
}

// Manager runs the daemon's jobs: submission, restarts, stop, cancel,
// savepoints, and resuming the jobs of a previous daemon.
type Manager struct {
	opts    Options
	reg     *registry
	metrics *promMetrics

	mu struct {
		sync.Mutex
		jobs    map[string]*managedJob
		closing bool
	}
	wg sync.WaitGroup
}

// NewManager returns a manager over opts.DataDir. It starts no job: call
// Resume.
func NewManager(opts Options) (*Manager, error) {
	if opts.DataDir == "" || opts.Store == nil {
		return nil, errors.New("server: Options.DataDir and Options.Store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Rand == nil {
		opts.Rand = defaultRand
	}
	reg, err := newRegistry(opts.DataDir)
	if err != nil {
		return nil, err
	}
	m := &Manager{opts: opts, reg: reg, metrics: newPromMetrics()}
	m.mu.jobs = make(map[string]*managedJob)
	m.metrics.registry.MustRegister(newJobCollector(m))
	return m, nil
}

// Resume starts every job the registry says was running, each from its
// newest completed checkpoint, and lists the ended ones. Damaged records
// are logged and skipped.
func (m *Manager) Resume() error {
	recs, bad, err := m.reg.list()
	if err != nil {
		return err
	}
	for _, err := range bad {
		m.opts.Logger.Error(err.Error())
	}
	for _, rec := range recs {
		plan, err := job.Load(rec.ID+".yaml", []byte(rec.Spec))
		if err != nil {
			m.opts.Logger.Error("cannot resume job: its recorded spec no longer compiles", "job", rec.ID, "error", err)
			continue
		}
		j := m.newJob(rec, plan)
		m.mu.Lock()
		m.mu.jobs[rec.ID] = j
		m.mu.Unlock()
		switch rec.Desired {
		case desiredRunning:
			m.opts.Logger.Info("resuming job", "job", rec.ID)
			m.start(j)
		default:
			j.endFromRecord()
		}
	}
	return nil
}

// SubmitOptions are the options of a submission besides its spec.
type SubmitOptions struct {
	// Savepoint is a savepoint directory to start from.
	Savepoint string
	// AllowNonRestoredState skips state of operators the job no longer has.
	AllowNonRestoredState bool
}

// Submit decodes, compiles and starts a job. A spec problem is a
// *SpecError; a job of the same name that has not ended is ErrConflict.
// A job of the same name that ended is replaced; like `streamd run`, the
// new job resumes from that name's newest checkpoint in the data dir
// (unless it starts from a savepoint).
func (m *Manager) Submit(spec []byte, so SubmitOptions) (*managedJob, error) {
	plan, err := job.Load("spec", spec)
	if err != nil {
		return nil, &SpecError{err}
	}
	id := plan.Spec.Name
	if so.Savepoint != "" {
		if !filepath.IsAbs(so.Savepoint) {
			return nil, &SpecError{fmt.Errorf("savepoint path %q must be absolute", so.Savepoint)}
		}
		if _, err := os.Stat(so.Savepoint); err != nil {
			return nil, &SpecError{fmt.Errorf("savepoint: %w", err)}
		}
	}
	// The engine refuses what it cannot run: check before recording. A
	// job that resumes from its name's newest checkpoint must fit it, as
	// `streamd validate --data-dir` checks (a savepoint is checked when the
	// job starts: the API answers before it is read).
	b, err := jobrun.Build(plan, jobrun.Options{Store: m.opts.Store,
		Restore: &engine.RestoreOptions{AllowNonRestoredState: so.AllowNonRestoredState}})
	if err != nil {
		return nil, &SpecError{err}
	}
	if so.Savepoint == "" && plan.Spec.Checkpointing != nil {
		if _, err := b.Job.CheckCheckpoint(m.opts.Store); errors.Is(err, engine.ErrIncompatible) {
			return nil, &SpecError{fmt.Errorf("%w (the data dir holds checkpoints of an earlier job named %q: give this one another name, or start it from a savepoint)", err, id)}
		}
	}
	baseline, err := m.opts.Store.MaxCheckpointID(id)
	if err != nil {
		return nil, err
	}
	rec := &record{ID: id, Spec: string(spec), Desired: desiredRunning, SubmittedAt: time.Now().UTC(),
		Savepoint: so.Savepoint, AllowNonRestoredState: so.AllowNonRestoredState, Baseline: baseline}

	m.mu.Lock()
	if m.mu.closing {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if old := m.mu.jobs[id]; old != nil {
		if !old.ended() {
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: job %q is %s; stop or cancel it first", ErrConflict, id, old.status())
		}
	} else if len(m.mu.jobs) >= MaxJobs {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: the daemon holds %d jobs (the limit); delete ended ones first", ErrTooMany, MaxJobs)
	}
	j := m.newJob(rec, plan)
	m.mu.jobs[id] = j
	m.mu.Unlock()
	if err := m.reg.put(rec); err != nil {
		m.mu.Lock()
		delete(m.mu.jobs, id)
		m.mu.Unlock()
		return nil, err
	}
	m.opts.Logger.Info("job submitted", "job", id, "savepoint", so.Savepoint != "")
	m.start(j)
	return j, nil
}

// Get returns a job.
func (m *Manager) Get(id string) (*managedJob, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if j := m.mu.jobs[id]; j != nil {
		return j, nil
	}
	return nil, fmt.Errorf("%w %q", ErrNotFound, id)
}

// List returns every job, in submission order.
func (m *Manager) List() []*managedJob {
	m.mu.Lock()
	js := make([]*managedJob, 0, len(m.mu.jobs))
	for _, j := range m.mu.jobs {
		js = append(js, j)
	}
	m.mu.Unlock()
	sort.Slice(js, func(a, b int) bool { return js[a].submitted.Before(js[b].submitted) })
	return js
}

// Shutdown stops every running job with a final checkpoint and committed
// sinks, keeping them recorded as running so that the next daemon resumes
// them, and waits for them; when ctx ends first it cancels the rest (they
// resume from their newest checkpoint) and returns ctx's error.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.mu.closing = true
	js := make([]*managedJob, 0, len(m.mu.jobs))
	for _, j := range m.mu.jobs {
		js = append(js, j)
	}
	m.mu.Unlock()
	for _, j := range js {
		j.request(reqShutdown, "")
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, j := range js {
			j.request(reqCancelShutdown, "")
		}
		<-done
		return ctx.Err()
	}
}

// Delete cancels a job if it runs, and forgets it once ended.
func (m *Manager) Delete(id string) error {
	j, err := m.Get(id)
	if err != nil {
		return err
	}
	j.request(reqCancel, "")
	<-j.done
	return nil
}

func (m *Manager) start(j *managedJob) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		j.loop()
	}()
}

// defaultSavepointDir is where a savepoint goes without a target
// directory: DATA/savepoints/JOB-TIME.
func (m *Manager) defaultSavepointDir(id string) string {
	return filepath.Join(m.opts.DataDir, "savepoints", fmt.Sprintf("%s-%s", id, time.Now().UTC().Format("20060102T150405.000000000")))
}
