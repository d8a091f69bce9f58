package kafka

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// StartFrom says where a fresh start reads each partition from.
type StartFrom int

const (
	StartEarliest  StartFrom = iota // the partition's first offset
	StartLatest                     // its end at the fresh start
	StartTimestamp                  // the first record at or after StartTimestampMs
	StartGroup                      // Group's committed offsets (earliest where none)
)

// SourceOptions configures a Kafka source.
type SourceOptions[T any] struct {
	Connection
	// Topics are read. Required.
	Topics []string
	// Decode fills v from a record (its key, headers and timestamp
	// included); an error fails the job. Required.
	Decode func(r *kgo.Record, v *T) error
	// StartFrom, StartTimestampMs and Group select the start offsets of
	// a fresh start; they are resolved once and stored in the splits.
	StartFrom        StartFrom
	StartTimestampMs int64
	Group            string
	// CommitToGroup commits, after each completed checkpoint, the
	// offsets that checkpoint stored to the consumer group Group, for
	// monitoring (lag dashboards) only: the source never reads them
	// back except to start from them (StartGroup). Best effort.
	CommitToGroup bool
	// Bounded stops each partition at its last stable offset at the
	// fresh start (no discovery then); the source ends when all are read.
	Bounded bool
	// DiscoveryInterval is how often new partitions are looked for. 0:
	// DefaultDiscoveryInterval; negative: never.
	DiscoveryInterval time.Duration
	// PollWait bounds how long a Read waits for records. Default 5 ms.
	PollWait time.Duration
	// RequestTimeout bounds the start's calls, and how long a reader
	// waits for records while its fetches fail before it fails the job.
	// Default DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// Validate reports every problem at once.
func (o *SourceOptions[T]) Validate() error {
	errs := o.Connection.validate()
	if len(o.Topics) == 0 {
		errs = append(errs, errors.New("kafka: source topics: at least one is required"))
	}
	for _, t := range o.Topics {
		if t == "" || strings.ContainsAny(t, "/#") {
			errs = append(errs, fmt.Errorf("kafka: source topic %q is not a valid topic name", t))
		}
	}
	if o.Decode == nil {
		errs = append(errs, errors.New("kafka: source needs a Decode function"))
	}
	if o.CommitToGroup && o.Group == "" {
		errs = append(errs, errors.New("kafka: commit_to_group needs a group"))
	}
	if o.StartFrom == StartGroup && o.Group == "" {
		errs = append(errs, errors.New("kafka: start from the group's offsets needs a group"))
	}
	return errors.Join(errs...)
}

func (o *SourceOptions[T]) ensureDefaults() {
	if o.DiscoveryInterval == 0 {
		o.DiscoveryInterval = DefaultDiscoveryInterval
	}
	if o.PollWait == 0 {
		o.PollWait = 5 * time.Millisecond
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
}

// Source is the Kafka source: a SplitEnumerator, and NewReader for
// engine.FromSplitSource.
type Source[T any] struct{ opts SourceOptions[T] }

// NewSource returns the source of opts.
func NewSource[T any](opts SourceOptions[T]) (*Source[T], error) {
	opts.ensureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Source[T]{opts: opts}, nil
}

func splitID(topic string, p int32) string { return topic + "/" + strconv.Itoa(int(p)) }

const discPrefix = "#discover/"

func discID(index, parallelism int) string {
	return discPrefix + strconv.Itoa(index) + "/" + strconv.Itoa(parallelism)
}

// parseSplitID parses "TOPIC/PARTITION".
func parseSplitID(id string) (string, int32, error) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 || strings.HasPrefix(id, "#") {
		return "", 0, fmt.Errorf("kafka: %q is not a partition split", id)
	}
	p, err := strconv.ParseInt(id[i+1:], 10, 32)
	if err != nil || p < 0 || strconv.Itoa(int(p)) != id[i+1:] {
		return "", 0, fmt.Errorf("kafka: %q is not a partition split", id)
	}
	return id[:i], int32(p), nil
}

// owner is the task of parallelism that owns a partition (Flink's rule).
func owner(topic string, p int32, parallelism int) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int((uint64(h.Sum32()&0x7fffffff)*31 + uint64(p)) % uint64(parallelism))
}

// Initial resolves every partition's start (and stop) offset and deals the
// partitions out by the owner rule, with a discovery split per task.
func (src *Source[T]) Initial(parallelism int) ([][]engine.Split, error) {
	ctx, cancel := context.WithTimeout(context.Background(), src.opts.RequestTimeout)
	defer cancel()
	cl, err := src.opts.newClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var starts kadm.ListedOffsets
	switch src.opts.StartFrom {
	case StartEarliest, StartGroup:
		starts, err = adm.ListStartOffsets(ctx, src.opts.Topics...)
	case StartLatest:
		starts, err = adm.ListCommittedOffsets(ctx, src.opts.Topics...)
	case StartTimestamp:
		starts, err = adm.ListOffsetsAfterMilli(ctx, src.opts.StartTimestampMs, src.opts.Topics...)
	}
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: cannot list the start offsets of %v: %w", src.opts.Topics, err)
	}
	var group kadm.OffsetResponses
	if src.opts.StartFrom == StartGroup {
		if group, err = adm.FetchOffsets(ctx, src.opts.Group); err != nil {
			return nil, fmt.Errorf("kafka: cannot fetch the offsets of group %q: %w", src.opts.Group, err)
		}
	}
	stops, err := adm.ListCommittedOffsets(ctx, src.opts.Topics...)
	if err == nil {
		err = stops.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: cannot list the end offsets of %v: %w", src.opts.Topics, err)
	}
	asg := make([][]engine.Split, parallelism)
	known := make([]int32, len(src.opts.Topics))
	for ti, t := range src.opts.Topics {
		ps := starts[t]
		if len(ps) == 0 && (src.opts.Bounded || src.opts.DiscoveryInterval < 0) {
			return nil, fmt.Errorf("kafka: topic %q does not exist", t)
		}
		parts := make([]int32, 0, len(ps))
		for p := range ps {
			parts = append(parts, p)
		}
		slices.Sort(parts)
		for _, p := range parts {
			st := partState{Next: ps[p].Offset, Stop: -1}
			if o, ok := group.Lookup(t, p); ok && o.Err == nil && o.At >= 0 {
				st.Next = o.At
			}
			if src.opts.Bounded {
				end, _ := stops.Lookup(t, p)
				st.Stop = end.Offset
			}
			st.Next = max(st.Next, 0)
			known[ti] = max(known[ti], p+1)
			i := owner(t, p, parallelism)
			asg[i] = append(asg[i], engine.Split{ID: splitID(t, p), State: appendPartState(nil, st)})
		}
	}
	for i := range asg {
		asg[i] = append(asg[i], engine.Split{ID: discID(i, parallelism), State: appendDiscState(nil, discState{Known: known})})
	}
	return asg, nil
}

// Reassign turns every partition (the discovered ones included) into a
// split of its own, dealt out by the owner rule, with new discovery
// splits whose known counts cover them all.
func (src *Source[T]) Reassign(all []engine.Split, parallelism int) ([][]engine.Split, error) {
	known := make([]int32, len(src.opts.Topics))
	topicIndex := make(map[string]int)
	for i, t := range src.opts.Topics {
		topicIndex[t] = i
	}
	asg := make([][]engine.Split, parallelism)
	seen := make(map[string]bool)
	add := func(t string, p int32, st partState) error {
		id := splitID(t, p)
		if seen[id] {
			return fmt.Errorf("kafka: partition %s appears twice in the checkpoint: its records would be read twice", id)
		}
		seen[id] = true
		if ti, ok := topicIndex[t]; ok {
			known[ti] = max(known[ti], p+1)
		}
		i := owner(t, p, parallelism)
		asg[i] = append(asg[i], engine.Split{ID: id, State: appendPartState(nil, st)})
		return nil
	}
	for _, sp := range all {
		if strings.HasPrefix(sp.ID, discPrefix) {
			ds, err := decodeDiscState(sp.State)
			if err != nil {
				return nil, err
			}
			for i, k := range ds.Known {
				if i < len(known) {
					known[i] = max(known[i], k)
				}
			}
			for _, f := range ds.Found {
				if err := add(f.Topic, f.Partition, f.partState); err != nil {
					return nil, err
				}
			}
			continue
		}
		t, p, err := parseSplitID(sp.ID)
		if err != nil {
			return nil, err
		}
		st, err := decodePartState(sp.State)
		if err != nil {
			return nil, err
		}
		if err := add(t, p, st); err != nil {
			return nil, err
		}
	}
	for i := range asg {
		asg[i] = append(asg[i], engine.Split{ID: discID(i, parallelism), State: appendDiscState(nil, discState{Known: known})})
	}
	return asg, nil
}

// part is one partition a reader reads.
type part struct {
	topic string
	p     int32
	partState
	split int // the index of its split
}

func (pt *part) finished() bool { return pt.Stop >= 0 && pt.Next >= pt.Stop }

// NewReader returns the reader of one task's splits.
func (src *Source[T]) NewReader(ctx engine.SourceContext, splits []engine.Split) (engine.SplitReader[T], error) {
	r := &sourceReader[T]{src: src, index: ctx.Index, parallelism: ctx.Parallelism, ids: make([]string, len(splits)), last: -1, disc: -1,
		byTP: make(map[string]*part)}
	for i, sp := range splits {
		r.ids[i] = sp.ID
		if strings.HasPrefix(sp.ID, discPrefix) {
			ds, err := decodeDiscState(sp.State)
			if err != nil {
				return nil, err
			}
			r.disc, r.known = i, ds.Known
			for _, f := range ds.Found {
				r.addPart(&part{topic: f.Topic, p: f.Partition, partState: f.partState, split: i})
			}
			continue
		}
		t, p, err := parseSplitID(sp.ID)
		if err != nil {
			return nil, err
		}
		st, err := decodePartState(sp.State)
		if err != nil {
			return nil, err
		}
		r.addPart(&part{topic: t, p: p, partState: st, split: i})
	}
	rctx, cancel := context.WithTimeout(context.Background(), src.opts.RequestTimeout)
	defer cancel()
	// A partition added to the client (a discovered one) is fetched once
	// the client's metadata has it and the fetch in flight returned: the
	// defaults (a refresh at most every 5 s, fetches waiting up to 5 s)
	// would delay its first records by seconds; these bound it to about
	// half a second, at the cost of a few small requests per second.
	r.health = newFetchHealth()
	cl, err := src.opts.newClient(rctx, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.MetadataMinAge(newPartitionDelay), kgo.FetchMaxWait(newPartitionDelay),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{}), kgo.WithHooks(r.health))
	if err != nil {
		return nil, err
	}
	r.cl = cl
	r.groupCommitter = groupCommitter{cl: cl, group: src.opts.Group, timeout: src.opts.RequestTimeout}
	r.assign(r.parts)
	r.nextDiscovery = time.Now()
	return r, nil
}

// newPartitionDelay bounds how long a discovered partition waits for the
// reader's client to fetch it.
const newPartitionDelay = 500 * time.Millisecond

type batch struct {
	pt   *part
	recs []*kgo.Record
}

type sourceReader[T any] struct {
	src                *Source[T]
	index, parallelism int
	ids                []string
	cl                 *kgo.Client
	parts              []*part
	byTP               map[string]*part
	disc               int     // the discovery split's index, -1 if none
	known              []int32 // its known partition counts per topic
	// queue holds fetched records, one partition per entry; Read hands
	// out the head's.
	queue         []batch
	last          int
	nextDiscovery time.Time
	// health fails Read when fetches fail for longer than RequestTimeout.
	health *fetchHealth
	groupCommitter
}

func (r *sourceReader[T]) addPart(pt *part) {
	r.parts = append(r.parts, pt)
	r.byTP[splitID(pt.topic, pt.p)] = pt
}

func (r *sourceReader[T]) assign(parts []*part) {
	m := make(map[string]map[int32]kgo.Offset)
	for _, pt := range parts {
		if pt.finished() {
			continue
		}
		if m[pt.topic] == nil {
			m[pt.topic] = make(map[int32]kgo.Offset)
		}
		m[pt.topic][pt.p] = kgo.NewOffset().At(pt.Next)
	}
	if len(m) > 0 {
		r.cl.AddConsumePartitions(m)
	}
}

// LastSplit implements engine.SplitWatermarks.
func (r *sourceReader[T]) LastSplit() int { return r.last }

// SplitFinished implements engine.SplitWatermarks.
func (r *sourceReader[T]) SplitFinished(i int) bool {
	if i == r.disc {
		return r.src.opts.Bounded || r.src.opts.DiscoveryInterval < 0
	}
	for _, pt := range r.parts {
		if pt.split == i {
			return pt.finished()
		}
	}
	return true
}

func (r *sourceReader[T]) done() bool {
	if !r.src.opts.Bounded && r.src.opts.DiscoveryInterval >= 0 {
		return false
	}
	for _, pt := range r.parts {
		if !pt.finished() {
			return false
		}
	}
	return r.src.opts.Bounded
}

// discover adds the new partitions this task owns.
func (r *sourceReader[T]) discover() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.src.opts.RequestTimeout)
	defer cancel()
	adm := kadm.NewClient(r.cl)
	// ListOffsets resolves partitions from the client's cached metadata,
	// kept up to MetadataMinAge (5 s): it would not see a partition
	// created since. A Metadata request always asks the cluster, and
	// refreshes that cache for the ListOffsets below.
	meta, err := adm.Metadata(ctx, r.src.opts.Topics...)
	if err != nil {
		return fmt.Errorf("kafka: cannot look for new partitions of %v: %w", r.src.opts.Topics, err)
	}
	var grown []string
	for ti, t := range r.src.opts.Topics {
		td, ok := meta.Topics[t]
		if !ok || td.Err != nil {
			continue // missing for now: a later discovery sees it
		}
		for p := range td.Partitions {
			if p >= r.known[ti] && owner(t, p, r.parallelism) == r.index && r.byTP[splitID(t, p)] == nil {
				grown = append(grown, t)
				break
			}
		}
	}
	if len(grown) == 0 {
		return nil
	}
	starts, err := adm.ListStartOffsets(ctx, grown...)
	if err != nil {
		return fmt.Errorf("kafka: cannot list the start offsets of the new partitions of %v: %w", grown, err)
	}
	var added []*part
	for ti, t := range r.src.opts.Topics {
		ps := make([]int32, 0, len(starts[t]))
		for p := range starts[t] {
			ps = append(ps, p)
		}
		slices.Sort(ps) // a stable order in the discovery split's state
		for _, p := range ps {
			o := starts[t][p]
			if o.Err != nil || p < r.known[ti] || owner(t, p, r.parallelism) != r.index || r.byTP[splitID(t, p)] != nil {
				continue // an error (a leader not elected yet): the next discovery retries
			}
			pt := &part{topic: t, p: p, partState: partState{Next: max(o.Offset, 0), Stop: -1}, split: r.disc}
			r.addPart(pt)
			added = append(added, pt)
		}
	}
	r.assign(added)
	if len(added) > 0 {
		// The consumer reads a partition once its own metadata has it,
		// at its next refresh (up to MetadataMaxAge away; one it
		// triggers itself waits out MetadataMinAge): ask for one now.
		r.cl.ForceMetadataRefresh()
	}
	return nil
}

// Read reads the next records. Its errors never match io.EOF: the engine
// takes errors.Is(err, io.EOF) for the end of the source, and a fetch that
// failed on a closed connection (or a Decode that returned io.EOF) wrapped
// with %w would end the job successfully with partitions unread.
func (r *sourceReader[T]) Read(buf []T) (int, error) {
	n, err := r.read(buf)
	if err != nil && err != io.EOF && errors.Is(err, io.EOF) {
		err = errors.New(err.Error())
	}
	return n, err
}

func (r *sourceReader[T]) read(buf []T) (int, error) {
	r.last = -1
	if r.done() {
		return 0, io.EOF
	}
	if r.disc >= 0 && !r.src.opts.Bounded && r.src.opts.DiscoveryInterval > 0 && time.Now().After(r.nextDiscovery) {
		r.nextDiscovery = time.Now().Add(r.src.opts.DiscoveryInterval)
		if err := r.discover(); err != nil {
			return 0, err
		}
	}
	if len(r.queue) == 0 {
		if err := r.poll(len(buf)); err != nil {
			return 0, err
		}
		if len(r.queue) == 0 {
			return 0, r.health.check(r.src.opts.RequestTimeout, &r.src.opts.Connection)
		}
	}
	b := &r.queue[0]
	pt := b.pt
	n := 0
	for len(b.recs) > 0 && n < len(buf) {
		rec := b.recs[0]
		if pt.Stop >= 0 && rec.Offset >= pt.Stop {
			b.recs = nil
			break
		}
		b.recs = b.recs[1:]
		if rec.Offset < pt.Next {
			continue // already read (a refetch)
		}
		pt.Next = rec.Offset + 1
		if rec.Attrs.IsControl() {
			continue
		}
		if err := r.src.opts.Decode(rec, &buf[n]); err != nil {
			return n, fmt.Errorf("kafka: cannot decode the record at %s offset %d: %w", splitID(pt.topic, pt.p), rec.Offset, err)
		}
		n++
	}
	if len(b.recs) == 0 {
		r.queue = r.queue[1:]
	}
	if n > 0 {
		r.last = pt.split
	}
	if r.done() {
		return n, io.EOF
	}
	return n, nil
}

// poll fetches up to max records into the queue, per partition.
func (r *sourceReader[T]) poll(max int) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.src.opts.PollWait)
	defer cancel()
	fs := r.cl.PollRecords(ctx, max)
	var ferr error
	fs.EachError(func(t string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ferr == nil {
			ferr = fmt.Errorf("kafka: cannot read %s: %w", splitID(t, p), err)
		}
	})
	if ferr != nil {
		return ferr
	}
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		pt := r.byTP[splitID(fp.Topic, fp.Partition)]
		if pt == nil {
			return
		}
		r.queue = append(r.queue, batch{pt: pt, recs: fp.Records})
	})
	return nil
}

func (r *sourceReader[T]) Splits() ([]engine.Split, error) {
	if r.src.opts.CommitToGroup {
		r.snapshot(r.parts)
	}
	out := make([]engine.Split, len(r.ids))
	for i, id := range r.ids {
		out[i].ID = id
	}
	var ds discState
	ds.Known = r.known
	for _, pt := range r.parts {
		if pt.split == r.disc {
			ds.Found = append(ds.Found, discovered{Topic: pt.topic, Partition: pt.p, partState: pt.partState})
			continue
		}
		out[pt.split].State = appendPartState(nil, pt.partState)
	}
	if r.disc >= 0 {
		out[r.disc].State = appendDiscState(nil, ds)
	}
	return out, nil
}

func (r *sourceReader[T]) Close() error {
	r.waitCommits()
	if r.cl != nil {
		r.cl.Close()
	}
	return nil
}
