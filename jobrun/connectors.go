package jobrun

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/streamd/streamd/connectors/kafka"
	"github.com/streamd/streamd/connectors/nats"
	"github.com/streamd/streamd/connectors/postgres"
	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/job"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The job package checks specs against its own copies of these connector
// defaults (it must not import connectors); the two must agree.
const (
	_ = uint(job.DefaultKafkaTransactionTimeout - kafka.DefaultTransactionTimeout)
	_ = uint(kafka.DefaultTransactionTimeout - job.DefaultKafkaTransactionTimeout)
	_ = uint(job.DefaultKafkaDiscoveryInterval - kafka.DefaultDiscoveryInterval)
	_ = uint(kafka.DefaultDiscoveryInterval - job.DefaultKafkaDiscoveryInterval)
	_ = uint(job.DefaultNATSMaxPendingBytes - nats.DefaultMaxPendingBytes)
	_ = uint(nats.DefaultMaxPendingBytes - job.DefaultNATSMaxPendingBytes)
	_ = uint(job.NATSMaxPendingBytesLimit - nats.MaxPendingBytesLimit)
	_ = uint(nats.MaxPendingBytesLimit - job.NATSMaxPendingBytesLimit)
	_ = uint(job.DefaultNATSReconnectTimeout - nats.DefaultReconnectTimeout)
	_ = uint(nats.DefaultReconnectTimeout - job.DefaultNATSReconnectTimeout)
	_ = uint(job.DefaultPostgresBatchRows - postgres.DefaultBatchRows)
	_ = uint(postgres.DefaultBatchRows - job.DefaultPostgresBatchRows)
	_ = uint(job.DefaultPostgresMaxBufferedRows - postgres.DefaultMaxBufferedRows)
	_ = uint(postgres.DefaultMaxBufferedRows - job.DefaultPostgresMaxBufferedRows)
	_ = uint(job.DefaultPostgresTimeout - postgres.DefaultTimeout)
	_ = uint(postgres.DefaultTimeout - job.DefaultPostgresTimeout)
	_ = uint(job.DefaultPostgresSourceBatchRows - postgres.DefaultSourceBatchRows)
	_ = uint(postgres.DefaultSourceBatchRows - job.DefaultPostgresSourceBatchRows)
	_ = uint(job.MaxPostgresSourceBatchRows - postgres.MaxSourceBatchRows)
	_ = uint(postgres.MaxSourceBatchRows - job.MaxPostgresSourceBatchRows)
	_ = uint(job.DefaultPostgresPollInterval - postgres.DefaultPollInterval)
	_ = uint(postgres.DefaultPollInterval - job.DefaultPostgresPollInterval)
)

// startCheckTimeout bounds the checks Run makes of a connector before the
// job starts (nats.CheckDuplicateWindow).
const startCheckTimeout = 10 * time.Second

var kafkaStarts = map[string]kafka.StartFrom{
	job.KafkaStartEarliest:  kafka.StartEarliest,
	job.KafkaStartLatest:    kafka.StartLatest,
	job.KafkaStartTimestamp: kafka.StartTimestamp,
	job.KafkaStartGroup:     kafka.StartGroup,
}

// kafkaSource adds a Kafka source whose record values are JSON objects
// decoded against the source's schema, with the metadata fields it
// declares (job.MessageDecoder).
func kafkaSource(j *engine.Job, name string, src *job.SourceSpec, schema *job.Schema, opt []engine.OpOption) (engine.Stream[job.Row], error) {
	k := src.Kafka
	start, ok := kafkaStarts[k.StartFrom]
	if !ok {
		panic(fmt.Sprintf("jobrun: kafka start_from %q was accepted by the job package", k.StartFrom))
	}
	dec := job.NewMessageDecoder(job.SourceKafka, schema)
	wantHeaders := dec.WantsHeaders()
	opts := kafka.SourceOptions[job.Row]{
		Connection:        kafka.Connection{Brokers: k.Brokers, UserEnv: k.UserEnv, PasswordEnv: k.PasswordEnv},
		Topics:            k.Topics,
		StartFrom:         start,
		StartTimestampMs:  k.StartTimestampMs,
		Group:             k.Group,
		CommitToGroup:     k.CommitToGroup,
		Bounded:           k.Bounded,
		DiscoveryInterval: k.DiscoveryInterval,
		Decode: func(rec *kgo.Record, r *job.Row) error {
			m := job.Meta{Key: rec.Key, Topic: rec.Topic, Partition: int64(rec.Partition), Offset: rec.Offset, TimestampMs: rec.Timestamp.UnixMilli()}
			if wantHeaders && len(rec.Headers) > 0 {
				m.Headers = make([][]byte, 0, 2*len(rec.Headers))
				for _, h := range rec.Headers {
					m.Headers = append(m.Headers, []byte(h.Key), h.Value)
				}
			}
			return dec.Decode(rec.Value, &m, r)
		},
	}
	s, err := kafka.NewSource(opts)
	if err != nil {
		return engine.Stream[job.Row]{}, fmt.Errorf("jobrun: source %q: %w", name, err)
	}
	return engine.FromSplitSource(j, name, s, s.NewReader, opt...), nil
}

// natsSource adds a JetStream source whose message payloads are JSON
// objects decoded against the source's schema, with the metadata fields
// it declares.
func natsSource(j *engine.Job, name string, src *job.SourceSpec, schema *job.Schema, opt []engine.OpOption) (engine.Stream[job.Row], error) {
	n := src.NATS
	dec := job.NewMessageDecoder(job.SourceNATS, schema)
	opts := nats.SourceOptions[job.Row]{
		Conn: nats.ConnOptions{URL: n.URL, UserEnv: n.UserEnv, PasswordEnv: n.PasswordEnv, TokenEnv: n.TokenEnv,
			ReconnectTimeout: n.ReconnectTimeout},
		Stream:   n.Stream,
		Subjects: n.Subjects,
		Bounded:  n.Bounded,
		StartSeq: uint64(n.StartSeq),
		Decode: func(msg *nats.Message, r *job.Row) error {
			m := job.Meta{Subject: msg.Subject, Seq: int64(msg.Seq), TimestampMs: msg.TimeMs}
			return dec.Decode(msg.Data, &m, r)
		},
	}
	s, err := nats.NewSource(opts)
	if err != nil {
		return engine.Stream[job.Row]{}, fmt.Errorf("jobrun: source %q: %w", name, err)
	}
	return engine.FromSplitSource(j, name, s, s.NewReader, opt...), nil
}

// kafkaSink returns the transactional Kafka sink of plan: each row one
// record whose value is the row as a JSON object (job.Schema.AppendJSON,
// the file sink's encoding) and whose key is the key field's text, if the
// spec names one.
func kafkaSink(plan *job.Plan) (*kafka.Sink[job.Row], error) {
	k := plan.Spec.Sink.Kafka
	if cp := plan.Spec.Checkpointing; cp != nil {
		// The job package checks the same rule with the spec's lines; this
		// is the connector's word on it.
		if err := kafka.CheckTransactionTimeout(k.TransactionTimeout, cp.Interval, cp.Timeout); err != nil {
			return nil, fmt.Errorf("jobrun: the kafka sink refuses job %q, whose spec was accepted (a bug: package job should have named the field): %w", plan.Spec.Name, err)
		}
	}
	schema := plan.SinkSchema
	encode := func(r *job.Row, rec *kgo.Record) { rec.Value = schema.AppendJSON(nil, r) }
	if k.Key != "" {
		f, ok := schema.Lookup(k.Key)
		if !ok {
			panic(fmt.Sprintf("jobrun: kafka sink key %q is not a field of %s, and Compile accepted it", k.Key, schema))
		}
		encode = func(r *job.Row, rec *kgo.Record) {
			rec.Value = schema.AppendJSON(nil, r)
			rec.Key = schema.AppendKeyText(nil, r, f)
		}
	}
	return kafka.NewSink(plan.Spec.Name, kafka.SinkOptions[job.Row]{
		Connection:         kafka.Connection{Brokers: k.Brokers, UserEnv: k.UserEnv, PasswordEnv: k.PasswordEnv},
		ID:                 k.ID,
		Topic:              k.Topic,
		Encode:             encode,
		TransactionTimeout: k.TransactionTimeout,
	})
}

// natsOptions returns the JetStream sink options of plan: each row one
// message, the row as a JSON object.
func natsOptions(plan *job.Plan) nats.SinkOptions[job.Row] {
	n := plan.Spec.Sink.NATS
	schema := plan.SinkSchema
	return nats.SinkOptions[job.Row]{
		Conn: nats.ConnOptions{URL: n.URL, UserEnv: n.UserEnv, PasswordEnv: n.PasswordEnv, TokenEnv: n.TokenEnv,
			ReconnectTimeout: n.ReconnectTimeout},
		Subject:         n.Subject,
		Stream:          n.Stream,
		Name:            n.Name,
		MaxPendingBytes: n.MaxPendingBytes,
		Encode:          func(dst []byte, r *job.Row) ([]byte, error) { return schema.AppendJSON(dst, r), nil },
	}
}

// natsDuplicateCheck returns what Run does before a job with a nats sink
// starts: compare the output stream's duplicate window with the checkpoint
// interval plus the expected recovery time (nats.CheckDuplicateWindow) and
// log the warning, if any. Not being able to tell is logged too; the sink
// itself fails the job if the server cannot be reached.
func natsDuplicateCheck(plan *job.Plan, logger func(string, ...any)) func(context.Context) error {
	opts := natsOptions(plan)
	var interval time.Duration
	if cp := plan.Spec.Checkpointing; cp != nil {
		interval = cp.Interval
	}
	return func(ctx context.Context) error {
		if logger == nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, startCheckTimeout)
		defer cancel()
		warning, err := nats.CheckDuplicateWindow(ctx, opts, interval)
		switch {
		case err != nil:
			logger("streamd: warning: cannot check the duplicate window of the nats sink's stream: %v", err)
		case warning != "":
			logger("streamd: warning: %s", warning)
		}
		return nil
	}
}

var postgresModes = map[string]postgres.Mode{
	job.PostgresAppend: postgres.Append,
	job.PostgresUpsert: postgres.Upsert,
}

// postgresSink returns the PostgreSQL sink of plan: each row one row of
// the table, each column the value of the field of its name
// (job.AppendColumnValues), in append (COPY) or upsert mode.
func postgresSink(plan *job.Plan) (*postgres.Sink[job.Row], error) {
	p := plan.Spec.Sink.Postgres
	mode, ok := postgresModes[p.Mode]
	if !ok {
		panic(fmt.Sprintf("jobrun: postgres sink mode %q was accepted by the job package", p.Mode))
	}
	fields := plan.PostgresColumns()
	columns := make([]string, len(fields))
	for i, f := range fields {
		columns[i] = f.Name
	}
	s, err := postgres.NewSink(plan.Spec.Name, postgres.SinkOptions[job.Row]{
		URL:             p.URL,
		PasswordEnv:     p.PasswordEnv,
		Table:           p.Table,
		Columns:         columns,
		Key:             p.Key,
		Mode:            mode,
		Encode:          func(dst []any, r *job.Row) []any { return job.AppendColumnValues(dst, r, fields) },
		Name:            p.Name,
		ProgressTable:   p.ProgressTable,
		BatchRows:       p.BatchRows,
		MaxBufferedRows: p.MaxBufferedRows,
		Timeout:         p.Timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("jobrun: sink: %w", err)
	}
	return s, nil
}

// postgresEnvCheck returns what Run does before a job with a postgres sink
// starts: refuse to start when the variable named by password_env is not
// set. The connector reads an unset variable as an empty password, which a
// server that trusts the host accepts, so a typo in password_env would go
// unnoticed until the job ran against a server that asks for one. It is a
// start check, not a Build error, so that `streamd validate` checks a spec
// on a machine without the job's secrets.
func postgresEnvCheck(plan *job.Plan) func(context.Context) error {
	env := plan.Spec.Sink.Postgres.PasswordEnv
	return func(context.Context) error {
		if env == "" {
			return nil
		}
		if _, ok := os.LookupEnv(env); !ok {
			return fmt.Errorf("jobrun: sink: the environment variable %s (named by password_env) is not set", env)
		}
		return nil
	}
}

// postgresKinds says how a postgres source reads the column of each field
// type (the connector checks at start that the column's type allows it).
var postgresKinds = map[job.Type]postgres.Kind{
	job.TypeInt:    postgres.KindInt,
	job.TypeFloat:  postgres.KindFloat,
	job.TypeBool:   postgres.KindBool,
	job.TypeString: postgres.KindText,
}

// postgresSource adds a PostgreSQL source: the table read in the order of
// its increasing column, each field of the schema from the column of its
// name (a NULL as the field's zero value).
func postgresSource(j *engine.Job, name string, src *job.SourceSpec, schema *job.Schema, opt []engine.OpOption) (engine.Stream[job.Row], error) {
	p := src.Postgres
	fields := schema.Fields
	columns := make([]string, len(fields))
	kinds := make([]postgres.Kind, len(fields))
	for i, f := range fields {
		k, ok := postgresKinds[f.Type]
		if !ok {
			panic(fmt.Sprintf("jobrun: field %s of postgres source %q has type %v, and Compile accepted it", f.Name, name, f.Type))
		}
		columns[i], kinds[i] = f.Name, k
	}
	decode := func(pr *postgres.Row, r *job.Row) error {
		for i, f := range fields {
			switch f.Type {
			case job.TypeInt:
				v, err := pr.Int(i)
				if err != nil {
					return err
				}
				r.SetInt(f.Slot, v)
			case job.TypeFloat:
				v, err := pr.Float(i)
				if err != nil {
					return err
				}
				r.SetFloat(f.Slot, v)
			case job.TypeBool:
				v, err := pr.Bool(i)
				if err != nil {
					return err
				}
				r.SetBool(f.Slot, v)
			case job.TypeString:
				v, err := pr.Text(i)
				if err != nil {
					return err
				}
				r.Str[f.Slot] = v
			}
		}
		return nil
	}
	s, err := postgres.NewSource(postgres.SourceOptions[job.Row]{
		URL:          p.URL,
		PasswordEnv:  p.PasswordEnv,
		Table:        p.Table,
		Column:       p.Column,
		Columns:      columns,
		Kinds:        kinds,
		Decode:       decode,
		Bounded:      p.Bounded,
		BatchRows:    p.BatchRows,
		PollInterval: p.PollInterval,
		Timeout:      p.Timeout,
	})
	if err != nil {
		return engine.Stream[job.Row]{}, fmt.Errorf("jobrun: source %q: %w", name, err)
	}
	return engine.FromSplitSource(j, name, s, s.NewReader, opt...), nil
}
