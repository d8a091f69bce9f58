package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/streamd/streamd/connectors/file"
	"github.com/streamd/streamd/connectors/sequence"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/engine/coord"
	"github.com/streamd/streamd/keyed"
	"github.com/streamd/streamd/snapshot"
)

// The "visibility" suite measures exactly-once visibility latency (issue
// 17): the time from a record entering the source to its result being
// committed and visible in the file sink's directory, with exactly-once
// checkpoints every 10 ms and every 100 ms, under load.
//
// The job, on the typed API at parallelism 2: a rate-limited sequence
// source (visRatePerSec records/s offered, split over its two tasks) that
// stamps each record with a monotonic clock reading when it produces it →
// key_by (visKeys keys) → a running count per key in keyed state → the
// file sink (connectors/file, the real one, behind a thin wrapper that
// only times its pre-commit's durable step and its commits) in a temporary
// directory, checkpoints into a Pebble store beside it. A watcher (inotify
// on the sink's directory) notes when each committed file appears — the
// file sink makes a file visible only by renaming it into the directory at
// commit — and a reader reads every such file and computes, per record,
// noticed − stamp. Both clocks are one monotonic clock (time.Since of the
// run's start), so wall-clock steps do not disturb the figures.
//
// One b.N iteration is visRunTime of input (visRatePerSec × visRunTime
// records); a run of b.N iterations is one job of b.N times as many
// records. The table's ns/record is therefore the inverse of the rate the
// job sustained (≈ 1/visRatePerSec while it keeps up), and the latencies
// go into notes: p50, p99 and max per case, the medians over the runs of
// the case (calibration's run included), and where the time goes in the
// last run. Every run checks, as correctness and not speed, that every
// record produced is in the committed files exactly once.
//
// STREAMD_BENCH_SMALL=1 (make bench-smoke) shortens an iteration to 250 ms.
func init() {
	for _, interval := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond} {
		Register(Case{
			Suite:   "visibility",
			Name:    "interval-" + interval.String(),
			Records: int(visRatePerSec * visRunTime().Seconds()),
			F:       func(b *testing.B) { benchVisibility(b, interval) },
		})
	}
}

// The suite's load.
const (
	// visRatePerSec is the offered load: records per second of the whole
	// source. On this 2-core VM the process then uses 0.8–0.9 of its two
	// cores with 10 ms checkpoints and 0.4–0.5 with 100 ms (the notes print
	// it), the watcher's reading and parsing included: busy, far from
	// saturated (the source keeps its rate), so that the latency is the
	// checkpoint's and the commit's rather than queueing behind a
	// saturated pipeline.
	visRatePerSec = 1_000_000
	// visKeys is the number of keys of the running count (its keyed state:
	// every checkpoint writes the key groups that changed, here all of
	// them).
	visKeys = 10_000
	// visParallelism is the parallelism of every operator.
	visParallelism = 2
	// visJob is the job's name, which prefixes the committed files' names.
	visJob = "visibility"
	// visDrainTimeout bounds the wait, after the job returned, for the
	// reader to have read every committed file.
	visDrainTimeout = 30 * time.Second
	// visMaxSpans bounds the commit and durable-step timings kept per run.
	visMaxSpans = 1 << 16
	// visMaxFiles bounds the committed files a run may produce (the
	// watcher's queue): far above 2 files per checkpoint of a run.
	visMaxFiles = 1 << 16
)

// visRunTime is the input time of one iteration.
func visRunTime() time.Duration {
	if small() {
		return 250 * time.Millisecond
	}
	return 3 * time.Second
}

// visRec is the job's record.
type visRec struct {
	Seq     int64 // the source's sequence number, 0..records-1: identifies the record
	Key     int64
	Count   int64 // the key's records so far, set by the count operator
	StampNs int64 // when the source produced it: ns since the run's start (monotonic)
}

// appendVisRec is the file sink's encoding of a record:
// {"seq":1,"key":1,"count":1,"stamp_ns":1}.
func appendVisRec(dst []byte, r *visRec) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `,"key":`...)
	dst = strconv.AppendInt(dst, r.Key, 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, r.Count, 10)
	dst = append(dst, `,"stamp_ns":`...)
	dst = strconv.AppendInt(dst, r.StampNs, 10)
	return append(dst, '}')
}

var visFields = [...]string{`{"seq":`, `,"key":`, `,"count":`, `,"stamp_ns":`}

// errVisLine is wrapped by parseVisRec's errors.
var errVisLine = errors.New("bench: malformed visibility record")

// parseVisRec decodes one line written by appendVisRec (without its
// newline). It accepts exactly that shape: the reader checks the sink's
// output, and anything else in a committed file is an error.
func parseVisRec(line []byte) (visRec, error) {
	var v [len(visFields)]int64
	rest := line
	for i, f := range visFields {
		var ok bool
		if rest, ok = bytes.CutPrefix(rest, []byte(f)); !ok {
			return visRec{}, fmt.Errorf("%w: want %s at byte %d of %q", errVisLine, f, len(line)-len(rest), line)
		}
		n := 0
		for n < len(rest) && (rest[n] == '-' && n == 0 || rest[n] >= '0' && rest[n] <= '9') {
			n++
		}
		x, err := strconv.ParseInt(string(rest[:n]), 10, 64)
		if err != nil {
			return visRec{}, fmt.Errorf("%w: field %s of %q: %v", errVisLine, f, line, err)
		}
		v[i] = x
		rest = rest[n:]
	}
	if string(rest) != "}" {
		return visRec{}, fmt.Errorf("%w: want } after the last field of %q", errVisLine, line)
	}
	return visRec{Seq: v[0], Key: v[1], Count: v[2], StampNs: v[3]}, nil
}

// visConfig is one measurement.
type visConfig struct {
	Interval   time.Duration // checkpoint interval
	RatePerSec float64       // offered load, records/s of the whole source
	Records    int64         // records of the whole source
	Keys       int64
	// StartTimer and StopTimer, if set, bracket the job's run (a
	// benchmark's b.StartTimer and b.StopTimer).
	StartTimer, StopTimer func()
}

// visResult is what a measurement found.
type visResult struct {
	Records int64 // records produced (the source's count)
	Files   int   // committed files read
	// Latency is noticed − stamp over every committed record.
	Latency latencyHist
	// Wall is the job's run, from Run to its return (its output
	// committed). CPU is the process's user+system CPU time meanwhile.
	Wall, CPU time.Duration
	// FirstStampNs and LastStampNs bound when the source produced.
	FirstStampNs, LastStampNs int64
	// Checkpoints are the job's checkpoint statistics.
	Checkpoints []engine.CheckpointStats
	// Breakdown says where the time went (see visBreakdown).
	Breakdown visBreakdown
}

// SourceRate is the rate at which the source produced, records/s.
func (r *visResult) SourceRate() float64 {
	if span := r.LastStampNs - r.FirstStampNs; span > 0 && r.Records > 1 {
		return float64(r.Records-1) / (float64(span) / 1e9)
	}
	return math.NaN()
}

// measureVisibility runs the job once and measures it; it fails when a
// record produced is not seen exactly once in the committed files.
func measureVisibility(ctx context.Context, cfg visConfig) (res visResult, err error) {
	if cfg.Interval <= 0 || cfg.Records < 1 || cfg.Keys < 1 || !(cfg.RatePerSec > 0) {
		return res, fmt.Errorf("bench: visibility: bad config %+v", cfg)
	}
	res.Records = cfg.Records
	dir, err := os.MkdirTemp("", "streamd-visibility-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return res, err
	}
	store, err := snapshot.Open(filepath.Join(dir, "store"), snapshot.Options{Compression: snapshot.CompressionS2, Logger: func(string, ...any) {}})
	if err != nil {
		return res, err
	}
	defer store.Close()

	start := time.Now()
	clock := func() int64 { return int64(time.Since(start)) }
	tally := newVisTally(cfg.Records)
	w, err := watchCommitted(outDir, clock, tally)
	if err != nil {
		return res, err
	}
	defer w.close()

	fsink, err := file.NewSink(visJob, file.SinkOptions[visRec]{Dir: outDir, Encode: appendVisRec})
	if err != nil {
		return res, err
	}
	timed := &timedSink{Sink: fsink, clock: clock}
	var logged struct {
		sync.Mutex
		first string
	}
	j := engine.NewJob(visJob, engine.Options{
		Parallelism: visParallelism,
		Checkpointing: &engine.CheckpointOptions{
			Options: coord.Options{Interval: cfg.Interval, Mode: engine.ExactlyOnce},
			Store:   store,
		},
		Logger: func(format string, args ...any) {
			logged.Lock()
			if logged.first == "" {
				logged.first = fmt.Sprintf(format, args...)
			}
			logged.Unlock()
		},
	})
	src := engine.FromSource(j, "source", sequence.New(sequence.Options[visRec]{
		Count: cfg.Records, Keys: cfg.Keys, RatePerSec: cfg.RatePerSec,
		Make: func(i, key int64, r *visRec) { *r = visRec{Seq: i, Key: key, StampNs: clock()} },
	}))
	ks := engine.KeyBy(src, engine.Int64Key(func(r *visRec) int64 { return r.Key }))
	counted := engine.Process(ks, "count", func(rt *engine.Runtime) (func(*engine.KeyedContext, *visRec, func(*visRec)), error) {
		st, err := keyed.NewValueState(rt.Backend(), rt.StateName("count"), keyed.Int64Codec, keyed.StateOptions{})
		if err != nil {
			return nil, err
		}
		return func(_ *engine.KeyedContext, r *visRec, emit func(*visRec)) {
			c, _ := st.Get()
			c++
			st.Put(c)
			r.Count = c
			emit(r)
		}, nil
	})
	engine.ToSink(counted, "files", engine.Sink[visRec](timed))

	cpu0 := cpuTime()
	if cfg.StartTimer != nil {
		cfg.StartTimer()
	}
	runStart := time.Now()
	err = j.Run(ctx)
	res.Wall = time.Since(runStart)
	if cfg.StopTimer != nil {
		cfg.StopTimer()
	}
	res.CPU = cpuTime() - cpu0
	if err != nil {
		return res, fmt.Errorf("bench: visibility job: %w", err)
	}
	res.Checkpoints = j.CheckpointStats()

	// Run returned with every transaction committed: wait until the
	// reader has read every committed file in the directory.
	committed, err := listCommitted(outDir)
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(visDrainTimeout)
	for tally.filesRead() < len(committed) && tally.failed() == nil && w.failed() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	w.close()
	if err := w.failed(); err != nil {
		return res, err
	}
	t := tally.result()
	if t.err != nil {
		return res, t.err
	}
	if len(t.files) != len(committed) {
		return res, fmt.Errorf("bench: visibility: the directory holds %d committed files, the watcher read %d in %v", len(committed), len(t.files), visDrainTimeout)
	}
	if err := t.checkExactlyOnce(); err != nil {
		logged.Lock()
		defer logged.Unlock()
		if logged.first != "" {
			err = fmt.Errorf("%w (the job logged: %s)", err, logged.first)
		}
		return res, err
	}
	res.Files = len(t.files)
	res.Latency = t.latency
	res.FirstStampNs, res.LastStampNs = t.minStamp, t.maxStamp
	durable, commits := timed.spans()
	res.Breakdown = breakdown(start, t, durable, commits, res.Checkpoints)
	return res, nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// isCommittedName reports whether name is a committed file of the file
// sink (connectors/file: JOB-TASK-RUN-SEQ.jsonl directly in its directory;
// work in progress lives in a dot-folder).
func isCommittedName(name string) bool {
	return strings.HasSuffix(name, ".jsonl") && !strings.HasPrefix(name, ".")
}

// taskOfName returns TASK of a committed file named JOB-TASK-RUN-SEQ.jsonl
// of job visJob, or -1.
func taskOfName(name string) int {
	rest, ok := strings.CutPrefix(name, visJob+"-")
	if !ok {
		return -1
	}
	f := strings.Split(strings.TrimSuffix(rest, ".jsonl"), "-")
	if len(f) != 3 {
		return -1
	}
	t, err := strconv.Atoi(f[0])
	if err != nil || t < 0 {
		return -1
	}
	return t
}

func listCommitted(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bench: visibility: cannot list the sink's directory: %w", err)
	}
	var names []string
	for _, e := range ents {
		if isCommittedName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// noticedFile is a committed file and when the watcher saw it appear.
type noticedFile struct {
	name string
	atNs int64
}

// committedWatcher notices committed files as they appear in a directory
// (inotify: a file renamed into it is IN_MOVED_TO, reported within
// microseconds of the rename) and hands them to a reader goroutine, which
// reads each into a visTally. Noticing and reading are separate goroutines
// so that reading a large file never delays the time stamp of the next.
type committedWatcher struct {
	f       *os.File // the inotify instance, non-blocking: Close wakes a Read
	queue   chan noticedFile
	done    sync.WaitGroup
	closeMu sync.Once
	mu      struct {
		sync.Mutex
		err error // the first failure of the watcher
	}
}

func watchCommitted(dir string, clock func() int64, tally *visTally) (*committedWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: visibility: inotify_init1: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bench: visibility: cannot watch %s: %w", dir, err)
	}
	// A non-blocking descriptor goes to Go's poller: Read parks the
	// goroutine, and Close wakes it with os.ErrClosed.
	w := &committedWatcher{f: os.NewFile(uintptr(fd), "inotify:"+dir), queue: make(chan noticedFile, visMaxFiles)}
	w.done.Add(2)
	go func() {
		defer w.done.Done()
		defer close(w.queue)
		buf := make([]byte, 64<<10)
		for {
			n, err := w.f.Read(buf)
			at := clock()
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					w.fail(fmt.Errorf("bench: visibility: reading inotify events: %w", err))
				}
				return
			}
			err = parseInotifyEvents(buf[:n], func(mask uint32, name string) error {
				switch {
				case mask&unix.IN_Q_OVERFLOW != 0:
					return errors.New("bench: visibility: the inotify queue overflowed: committed files were not noticed")
				case mask&unix.IN_CREATE != 0 && isCommittedName(name):
					// The file sink creates nothing in the directory; a file
					// appears only by rename (IN_MOVED_TO).
					return fmt.Errorf("bench: visibility: %s was created in the sink's directory instead of renamed into it", name)
				case mask&unix.IN_MOVED_TO != 0 && isCommittedName(name):
					select {
					case w.queue <- noticedFile{name: name, atNs: at}:
					default:
						return fmt.Errorf("bench: visibility: more than %d committed files", visMaxFiles)
					}
				}
				return nil
			})
			if err != nil {
				w.fail(err)
				return
			}
		}
	}()
	go func() {
		defer w.done.Done()
		var buf []byte
		for nf := range w.queue {
			var err error
			if buf, err = readFileInto(buf[:0], filepath.Join(dir, nf.name)); err == nil {
				err = tally.addFile(nf, buf)
			}
			if err != nil {
				tally.fail(err)
			}
		}
	}()
	return w, nil
}

// readFileInto appends the content of path to buf.
func readFileInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, fmt.Errorf("bench: visibility: cannot open a committed file: %w", err)
	}
	defer f.Close()
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(cap(buf), 64<<10))
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("bench: visibility: cannot read %s: %w", path, err)
		}
	}
}

func (w *committedWatcher) fail(err error) {
	w.mu.Lock()
	if w.mu.err == nil {
		w.mu.err = err
	}
	w.mu.Unlock()
}

func (w *committedWatcher) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.err
}

// close stops the watcher and waits for its goroutines; the reader reads
// what was noticed before it returns.
func (w *committedWatcher) close() {
	w.closeMu.Do(func() {
		w.f.Close()
		w.done.Wait()
	})
}

// parseInotifyEvents calls fn with the mask and name of every event in buf,
// the bytes of one read from an inotify descriptor (struct inotify_event,
// then len bytes of NUL-padded name), and stops at fn's first error. A
// truncated or inconsistent buffer is an error.
func parseInotifyEvents(buf []byte, fn func(mask uint32, name string) error) error {
	const hdr = unix.SizeofInotifyEvent // wd, mask, cookie, len: 4 × 4 bytes
	for len(buf) > 0 {
		if len(buf) < hdr {
			return fmt.Errorf("bench: visibility: truncated inotify event: %d bytes", len(buf))
		}
		mask := binary.NativeEndian.Uint32(buf[4:8])
		n := binary.NativeEndian.Uint32(buf[12:16])
		if uint64(n) > uint64(len(buf)-hdr) {
			return fmt.Errorf("bench: visibility: inotify event names %d bytes, %d left", n, len(buf)-hdr)
		}
		name := buf[hdr : hdr+int(n)]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if err := fn(mask, string(name)); err != nil {
			return err
		}
		buf = buf[hdr+int(n):]
	}
	return nil
}

// visTally is the reader's account of the committed records.
type visTally struct {
	mu struct {
		sync.Mutex
		t tallied
	}
}

// tallied is a visTally's content.
type tallied struct {
	records  int64    // records the source produced: seq in [0, records)
	seen     []uint64 // bit i: seq i was seen
	distinct int64    // distinct seqs seen
	dups     int64    // records seen again
	latency  latencyHist
	minStamp int64
	maxStamp int64
	files    []fileSeen
	err      error // the first malformed file or out-of-range record
}

// fileSeen is one committed file as read.
type fileSeen struct {
	task      int   // the sink task that wrote it (from its name)
	noticedNs int64 // when the watcher saw it appear
	records   int64
	stampSum  float64 // sum of its records' stamps, ns (for mean waits)
	minStamp  int64   // its oldest record's stamp
}

func newVisTally(records int64) *visTally {
	v := &visTally{}
	v.mu.t = tallied{records: records, seen: make([]uint64, (records+63)/64), minStamp: math.MaxInt64, maxStamp: math.MinInt64}
	return v
}

// addFile accounts for the records of one committed file.
func (v *visTally) addFile(nf noticedFile, data []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := &v.mu.t
	if t.err != nil {
		return nil
	}
	fs := fileSeen{task: taskOfName(nf.name), noticedNs: nf.atNs, minStamp: math.MaxInt64}
	if fs.task < 0 {
		return fmt.Errorf("bench: visibility: committed file %s is not named %s-TASK-RUN-SEQ.jsonl", nf.name, visJob)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return fmt.Errorf("bench: visibility: committed file %s does not end with a newline", nf.name)
	}
	for line := range bytes.Lines(data) {
		r, err := parseVisRec(line[:len(line)-1])
		if err != nil {
			return fmt.Errorf("%s: %w", nf.name, err)
		}
		if r.Seq < 0 || r.Seq >= t.records {
			return fmt.Errorf("bench: visibility: %s holds record %d, outside the source's [0, %d)", nf.name, r.Seq, t.records)
		}
		word, bit := r.Seq/64, uint64(1)<<(r.Seq%64)
		if t.seen[word]&bit != 0 {
			t.dups++
		} else {
			t.seen[word] |= bit
			t.distinct++
		}
		t.latency.add(nf.atNs - r.StampNs)
		t.minStamp = min(t.minStamp, r.StampNs)
		t.maxStamp = max(t.maxStamp, r.StampNs)
		fs.records++
		fs.stampSum += float64(r.StampNs)
		fs.minStamp = min(fs.minStamp, r.StampNs)
	}
	t.files = append(t.files, fs)
	return nil
}

func (v *visTally) fail(err error) {
	v.mu.Lock()
	if v.mu.t.err == nil {
		v.mu.t.err = err
	}
	v.mu.Unlock()
}

func (v *visTally) failed() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mu.t.err
}

func (v *visTally) filesRead() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.mu.t.files)
}

// result returns a copy of the tally (call it once the reader stopped).
func (v *visTally) result() tallied {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mu.t
}

// checkExactlyOnce reports records missing from the committed files or
// seen more than once, and latencies that are not positive (a record
// visible before it was produced: a broken clock or a broken tally).
func (t *tallied) checkExactlyOnce() error {
	var errs []error
	if t.dups > 0 {
		errs = append(errs, fmt.Errorf("%d records were committed more than once", t.dups))
	}
	if missing := t.records - t.distinct; missing > 0 {
		errs = append(errs, fmt.Errorf("%d of %d records are missing from the committed files", missing, t.records))
	}
	if t.latency.nonPositive > 0 {
		errs = append(errs, fmt.Errorf("%d records were noticed no later than they were produced", t.latency.nonPositive))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: visibility: not exactly once: %w", err)
	}
	return nil
}

// latencyHist is a log-linear histogram of durations in ns: exact below
// 2^latSubBits ns, then 2^latSubBits buckets per power of two, so a
// percentile is within 1/2^(latSubBits+1) (0.4 %) of the true one. Count,
// min, max and sum are exact. It takes 58 KiB whatever it counts.
type latencyHist struct {
	counts      [(64 - latSubBits) << latSubBits]uint64
	n           int64
	nonPositive int64 // durations <= 0, counted in bucket 0
	sum         float64
	min, max    int64
}

const latSubBits = 7

func latBucket(ns int64) int {
	if ns < 1<<latSubBits {
		return int(max(ns, 0))
	}
	shift := bits.Len64(uint64(ns)) - latSubBits - 1
	return (shift+1)<<latSubBits + int(ns>>shift) - 1<<latSubBits
}

// latBucketMid returns the middle of bucket i's range.
func latBucketMid(i int) int64 {
	if i < 1<<latSubBits {
		return int64(i)
	}
	shift := i>>latSubBits - 1
	low := int64(1<<latSubBits+i&(1<<latSubBits-1)) << shift
	return low + (int64(1)<<shift)/2
}

func (h *latencyHist) add(ns int64) {
	if h.n == 0 || ns < h.min {
		h.min = ns
	}
	if h.n == 0 || ns > h.max {
		h.max = ns
	}
	if ns <= 0 {
		h.nonPositive++
	}
	h.counts[latBucket(ns)]++
	h.n++
	h.sum += float64(ns)
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1), clamped to
// [min, max]; 0 when empty.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), uint64(h.n))
	var c uint64
	for i, k := range h.counts {
		if c += k; c >= rank {
			return time.Duration(min(max(latBucketMid(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *latencyHist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// timedSink is the file sink with timings of its writers' durable steps
// and commits; everything else is the file sink's own (Recover,
// LastCommitted and Close are promoted from it).
type timedSink struct {
	*file.Sink[visRec]
	clock func() int64
	mu    struct {
		sync.Mutex
		durable, commits []span // bounded by visMaxSpans each
	}
}

// span is one timed call: of a task's durable step or commit for a
// checkpoint, in ns of the run's clock.
type span struct {
	task       int
	id         uint64
	start, end int64
}

func (s *timedSink) record(to *[]span, sp span) {
	s.mu.Lock()
	if len(*to) < visMaxSpans {
		*to = append(*to, sp)
	}
	s.mu.Unlock()
}

func (s *timedSink) spans() (durable, commits []span) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.durable), slices.Clone(s.mu.commits)
}

func (s *timedSink) NewWriter(ctx engine.SinkContext) (engine.SinkWriter[visRec], error) {
	w, err := s.Sink.NewWriter(ctx)
	if err != nil {
		return nil, err
	}
	ap, ok := w.(engine.AsyncPreCommitter)
	if !ok {
		w.Close()
		return nil, errors.New("bench: visibility: the file sink's writer no longer pre-commits asynchronously; the wrapper would change what is measured")
	}
	return &timedWriter{SinkWriter: w, ap: ap, s: s, task: ctx.Index}, nil
}

type timedWriter struct {
	engine.SinkWriter[visRec]
	ap   engine.AsyncPreCommitter
	s    *timedSink
	task int
}

func (w *timedWriter) PreCommitAsync(id uint64) ([]byte, engine.DurableStep, error) {
	state, step, err := w.ap.PreCommitAsync(id)
	if step == nil {
		return state, step, err
	}
	return state, engine.DurableFunc(func() error {
		start := w.s.clock()
		err := step.Run()
		w.s.record(&w.s.mu.durable, span{task: w.task, id: id, start: start, end: w.s.clock()})
		return err
	}, step.Abandon), err
}

func (w *timedWriter) Commit(id uint64) error {
	start := w.s.clock()
	err := w.SinkWriter.Commit(id)
	w.s.record(&w.s.mu.commits, span{task: w.task, id: id, start: start, end: w.s.clock()})
	return err
}

// visBreakdown says where a run's visibility latency went. Mean* are means
// over the committed records and add up to the mean latency: a record
// waits for the next checkpoint's trigger, the checkpoint completes (its
// barrier passes the job, the sink's transaction and the keyed state are
// made durable, the metadata is written), the driver tells the sink task,
// which commits (the commit marker, the rename that makes the file visible,
// the directory's fsync), and the watcher notices the rename. The per-
// checkpoint figures are p50 and p99 over the completed checkpoints.
type visBreakdown struct {
	Records               int64 // records the means are over
	MeanWait              time.Duration
	MeanTriggerToComplete time.Duration
	MeanCompleteToCommit  time.Duration
	MeanCommitToNoticed   time.Duration
	Checkpoints, Failed   int
	Spacing               [2]time.Duration // between regular triggers
	TriggerToComplete     [2]time.Duration // the checkpoint's end-to-end duration
	Barriers              [2]time.Duration // trigger → every task has its barriers and took its synchronous part
	Async                 [2]time.Duration // the slowest task's asynchronous part: sink fsyncs, keyed state to Pebble
	LastAck               [2]time.Duration // trigger → the slowest task's barrier + sync + async work
	AfterAcks             [2]time.Duration // LastAck → complete: the ack's way to the driver, the metadata write
	SinkDurable           [2]time.Duration // the sink's fsyncs of file and folder (one task's step)
	CompleteToCommit      [2]time.Duration // complete → a sink task's Commit starts
	Commit                [2]time.Duration // a sink task's Commit: marker, renames, fsyncs
	// Tail is the same split of the latency of the oldest record of each
	// file that holds a record at or above the p99 (means over those
	// files): what the slowest records waited for.
	Tail struct {
		Files                                                               int
		Latency, Wait, TriggerToComplete, CompleteToCommit, CommitToNoticed time.Duration
	}
	Unmatched   int64         // records of files that matched no checkpoint
	MeanLatency time.Duration // over every committed record
}

func p50p99(ds []time.Duration) [2]time.Duration {
	a, b := percentiles(ds)
	return [2]time.Duration{a, b}
}

// breakdown computes a visBreakdown. Each committed file is matched to the
// commit of its task that started last before the file was noticed, and so
// to that commit's checkpoint.
func breakdown(start time.Time, t tallied, durableSpans, commitSpans []span, stats []engine.CheckpointStats) visBreakdown {
	var bd visBreakdown
	type cp struct{ trigger, complete int64 }
	cps := map[uint64]cp{}
	var spacing, e2e, barriers, async, lastAck, afterAcks []time.Duration
	var prev int64 = -1
	for _, s := range stats {
		if s.Status != "completed" {
			bd.Failed++
			continue
		}
		bd.Checkpoints++
		tr := int64(s.TriggeredAt.Sub(start))
		cps[s.ID] = cp{trigger: tr, complete: tr + int64(s.Duration)}
		if prev >= 0 && !s.Final { // the final one is triggered by the end of input
			spacing = append(spacing, time.Duration(tr-prev))
		}
		prev = tr
		e2e = append(e2e, s.Duration)
		var b, a, slowest time.Duration
		for _, ts := range s.Tasks {
			sync := ts.StartDelay + ts.Alignment + ts.SyncPause
			b, a, slowest = max(b, sync), max(a, ts.Async), max(slowest, sync+ts.Async)
		}
		barriers, async = append(barriers, b), append(async, a)
		lastAck, afterAcks = append(lastAck, slowest), append(afterAcks, s.Duration-slowest)
	}
	bd.Spacing, bd.TriggerToComplete = p50p99(spacing), p50p99(e2e)
	bd.Barriers, bd.Async, bd.LastAck, bd.AfterAcks = p50p99(barriers), p50p99(async), p50p99(lastAck), p50p99(afterAcks)
	var durable, toCommit, commit []time.Duration
	for _, d := range durableSpans {
		durable = append(durable, time.Duration(d.end-d.start))
	}
	commitsOf := map[int][]span{}
	for _, c := range commitSpans {
		commitsOf[c.task] = append(commitsOf[c.task], c)
		commit = append(commit, time.Duration(c.end-c.start))
		if k, ok := cps[c.id]; ok {
			toCommit = append(toCommit, time.Duration(c.start-k.complete))
		}
	}
	bd.SinkDurable, bd.CompleteToCommit, bd.Commit = p50p99(durable), p50p99(toCommit), p50p99(commit)

	var wait, trToCo, coToCm, cmToNo float64
	p99 := int64(t.latency.quantile(0.99))
	var tail [5]float64 // latency, wait, trigger → complete, complete → commit, commit → noticed
	for _, f := range t.files {
		cs := commitsOf[f.task]
		i := searchSpans(cs, f.noticedNs) - 1
		if i < 0 {
			bd.Unmatched += f.records
			continue
		}
		c := cs[i]
		k, ok := cps[c.id]
		if !ok {
			bd.Unmatched += f.records
			continue
		}
		n := float64(f.records)
		bd.Records += f.records
		wait += n*float64(k.trigger) - f.stampSum
		trToCo += n * float64(k.complete-k.trigger)
		coToCm += n * float64(c.start-k.complete)
		cmToNo += n * float64(f.noticedNs-c.start)
		if f.records > 0 && f.noticedNs-f.minStamp >= p99 {
			bd.Tail.Files++
			for i, x := range [...]int64{f.noticedNs - f.minStamp, k.trigger - f.minStamp, k.complete - k.trigger, c.start - k.complete, f.noticedNs - c.start} {
				tail[i] += float64(x)
			}
		}
	}
	if n := float64(bd.Tail.Files); n > 0 {
		d := func(i int) time.Duration { return time.Duration(tail[i] / n) }
		bd.Tail.Latency, bd.Tail.Wait, bd.Tail.TriggerToComplete, bd.Tail.CompleteToCommit, bd.Tail.CommitToNoticed = d(0), d(1), d(2), d(3), d(4)
	}
	if bd.Records > 0 {
		n := float64(bd.Records)
		bd.MeanWait = time.Duration(wait / n)
		bd.MeanTriggerToComplete = time.Duration(trToCo / n)
		bd.MeanCompleteToCommit = time.Duration(coToCm / n)
		bd.MeanCommitToNoticed = time.Duration(cmToNo / n)
	}
	bd.MeanLatency = t.latency.mean()
	return bd
}

// searchSpans returns the number of spans of cs (in start order)
// that started at or before ns.
func searchSpans(cs []span, ns int64) int {
	i, _ := slices.BinarySearchFunc(cs, ns, func(c span, ns int64) int {
		if c.start <= ns {
			return -1
		}
		return 1
	})
	return i
}

// visRun is what the notes keep of one run of a case.
type visRun struct {
	p50, p99, max time.Duration
	rate          float64 // records/s the source produced
	cores         float64 // CPU used, in cores
}

// visRuns collects the runs of each case (by interval) in this process,
// calibration's included, for the notes' medians.
var visRuns struct {
	sync.Mutex
	byInterval map[time.Duration][]visRun
}

func benchVisibility(b *testing.B, interval time.Duration) {
	b.StopTimer()
	b.ReportAllocs()
	perIteration := int64(visRatePerSec * visRunTime().Seconds())
	res, err := measureVisibility(context.Background(), visConfig{
		Interval: interval, RatePerSec: visRatePerSec, Records: int64(b.N) * perIteration, Keys: visKeys,
		StartTimer: b.StartTimer, StopTimer: b.StopTimer,
	})
	if err != nil {
		b.Fatal(err)
	}
	run := visRun{
		p50: res.Latency.quantile(0.50), p99: res.Latency.quantile(0.99), max: time.Duration(res.Latency.max),
		rate: res.SourceRate(), cores: res.CPU.Seconds() / res.Wall.Seconds(),
	}
	visRuns.Lock()
	if visRuns.byInterval == nil {
		visRuns.byInterval = map[time.Duration][]visRun{}
	}
	visRuns.byInterval[interval] = append(visRuns.byInterval[interval], run)
	runs := slices.Clone(visRuns.byInterval[interval])
	visRuns.Unlock()
	noteVisibility(interval, runs, &res)
}

// noteVisibility records a case's figures: medians over its runs so far,
// and where the time went in the last one.
func noteVisibility(interval time.Duration, runs []visRun, last *visResult) {
	med := func(f func(visRun) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return Median(xs)
	}
	dur := func(f func(visRun) time.Duration) time.Duration {
		return time.Duration(med(func(r visRun) float64 { return float64(f(r)) }))
	}
	var each []string
	for _, r := range runs {
		each = append(each, ms(r.p99))
	}
	Note("visibility-"+interval.String(),
		"exactly-once visibility, checkpoints every %v (%d runs of %d records, %.0f k records/s offered, %d keys, parallelism %d): "+
			"source → committed and visible in the file sink's directory p50 %s, p99 %s, max %s (medians over the runs; p99 of each run: %s); "+
			"the source produced %.0f k records/s; every record committed exactly once; CPU %.2f cores of %d",
		interval, len(runs), last.Records, visRatePerSec/1e3, visKeys, visParallelism,
		ms(dur(func(r visRun) time.Duration { return r.p50 })), ms(dur(func(r visRun) time.Duration { return r.p99 })),
		ms(dur(func(r visRun) time.Duration { return r.max })), strings.Join(each, ", "),
		med(func(r visRun) float64 { return r.rate })/1e3, med(func(r visRun) float64 { return r.cores }), runtime.NumCPU())
	bd := &last.Breakdown
	pq := func(x [2]time.Duration) string { return ms(x[0]) + " / " + ms(x[1]) }
	Note("visibility-"+interval.String()+"-where",
		"visibility at %v, where the time went in the last run — means per record, adding up to the mean latency %s: "+
			"waiting for the next checkpoint's trigger %s, trigger → checkpoint complete %s, complete → the sink task's commit starts %s, "+
			"commit start → file noticed %s. The p99 tail (the oldest record of each of the %d files holding a record at or above p99: %s): "+
			"waiting %s, trigger → complete %s, complete → commit starts %s, commit start → noticed %s. Per checkpoint, p50 / p99 over %d (%d failed): trigger spacing %s; trigger → complete %s, "+
			"of which trigger → every task past its barriers and synchronous part %s, the slowest task's asynchronous part %s "+
			"(the sink's fsyncs of file and folder: %s), trigger → last task's work done %s, and from there to complete "+
			"(the ack's way to the driver, the metadata's synced write) %s; complete → commit starts %s; "+
			"commit (marker, rename, directory fsync) %s",
		interval, ms(bd.MeanLatency), ms(bd.MeanWait), ms(bd.MeanTriggerToComplete), ms(bd.MeanCompleteToCommit), ms(bd.MeanCommitToNoticed),
		bd.Tail.Files, ms(bd.Tail.Latency), ms(bd.Tail.Wait), ms(bd.Tail.TriggerToComplete), ms(bd.Tail.CompleteToCommit), ms(bd.Tail.CommitToNoticed),
		bd.Checkpoints, bd.Failed, pq(bd.Spacing), pq(bd.TriggerToComplete), pq(bd.Barriers), pq(bd.Async), pq(bd.SinkDurable),
		pq(bd.LastAck), pq(bd.AfterAcks), pq(bd.CompleteToCommit), pq(bd.Commit))
}

// ms formats d in milliseconds with 0.1 ms resolution.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", d.Seconds()*1e3) }
