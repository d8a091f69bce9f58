package job

import (
	"fmt"
	"github.com/streamd/streamd/internal/jsonx"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// This file holds the spec of the sources and sinks that are real systems
// (Kafka, NATS JetStream, PostgreSQL): their `source:`/`sink:` options, how
// they are decoded and checked, and the row codecs jobrun plugs into the
// connectors. The job package must not import connectors, so it keeps its
// own copies of the few connector defaults a spec check needs, and jobrun
// asserts at compile time that they agree.
//
// A new connector type goes here in the same shape: a Type constant beside
// the others, a *XSourceSpec / *XSinkSpec pointer on SourceSpec /
// SinkSpec, its keys in connSourceKeys / connSinkKeys, a case in
// decoder.connSource / connSink and validator.connSource / connSink, and
// its construction in jobrun's newSource / buildSink. The postgres source's
// and sink's own parts (their options, the URL check, the columns) are in
// postgres.go.

// Connector source and sink types. SourceFile's `fields:` schema is theirs
// too: each message's value is one JSON object decoded as a file source's
// line is (Schema.DecodeJSON).
const (
	SourceKafka = "kafka"
	SourceNATS  = "nats"
	// SourcePostgres reads a table by an increasing column (postgres.go).
	SourcePostgres = "postgres"
	SinkKafka      = "kafka"
	SinkNATS       = "nats"
	// SinkPostgres writes rows into a PostgreSQL table (postgres.go).
	SinkPostgres = "postgres"
)

// Kafka start positions (`start_from:`), kafka.StartFrom's values.
const (
	KafkaStartEarliest  = "earliest"
	KafkaStartLatest    = "latest"
	KafkaStartTimestamp = "timestamp"
	KafkaStartGroup     = "group"
)

// Copies of connector defaults that spec checks need (jobrun asserts they
// equal the connectors' own).
const (
	// DefaultKafkaTransactionTimeout is kafka.DefaultTransactionTimeout.
	DefaultKafkaTransactionTimeout = 15 * time.Minute
	// MinKafkaTransactionTimeout is the smallest transaction timeout the
	// kafka sink accepts.
	MinKafkaTransactionTimeout = time.Second
	// DefaultKafkaDiscoveryInterval is kafka.DefaultDiscoveryInterval.
	DefaultKafkaDiscoveryInterval = 30 * time.Second
	// DefaultKafkaSinkID is the `id:` of a kafka sink that names none.
	DefaultKafkaSinkID = "kafka"
	// DefaultNATSSinkName is nats.DefaultSinkName.
	DefaultNATSSinkName = "nats"
	// DefaultNATSMaxPendingBytes is nats.DefaultMaxPendingBytes and
	// NATSMaxPendingBytesLimit nats.MaxPendingBytesLimit.
	DefaultNATSMaxPendingBytes = 16 << 20
	NATSMaxPendingBytesLimit   = 1 << 30
	// DefaultNATSReconnectTimeout is nats.DefaultReconnectTimeout: how
	// long a nats source or sink waits for a lost connection to come back
	// before it fails the job.
	DefaultNATSReconnectTimeout = 30 * time.Second
	// MinNATSMaxPendingBytes is the smallest max_pending_bytes the nats
	// sink accepts.
	MinNATSMaxPendingBytes = 1024
)

// KafkaSourceSpec is a kafka source's options (connectors/kafka.SourceOptions).
type KafkaSourceSpec struct {
	Brokers           []string
	Topics            []string
	StartFrom         string // KafkaStart*, default earliest
	StartTimestampMs  int64  // start_from timestamp: ms since the epoch
	Group             string // start_from group, or commit_to_group: the consumer group
	CommitToGroup     bool   // commit each completed checkpoint's offsets to Group (monitoring only)
	Bounded           bool
	DiscoveryInterval time.Duration // default DefaultKafkaDiscoveryInterval; unused when bounded
	UserEnv           string
	PasswordEnv       string
}

// NATSSourceSpec is a nats source's options (connectors/nats.SourceOptions).
type NATSSourceSpec struct {
	URL         string // "" = the connector's default, nats://127.0.0.1:4222
	Stream      string
	Subjects    []string // nil = the stream's subjects
	Bounded     bool
	StartSeq    int64 // 0 = from the beginning
	UserEnv     string
	PasswordEnv string
	TokenEnv    string
	// ReconnectTimeout: a lost connection not back by then fails the job
	// (default DefaultNATSReconnectTimeout).
	ReconnectTimeout time.Duration
}

// KafkaSinkSpec is a kafka sink's options (connectors/kafka.SinkOptions).
type KafkaSinkSpec struct {
	Brokers            []string
	Topic              string
	ID                 string        // default DefaultKafkaSinkID
	TransactionTimeout time.Duration // default DefaultKafkaTransactionTimeout
	UserEnv            string
	PasswordEnv        string
	// Key, if set, is the field whose value becomes each record's key
	// (AppendKeyText); "" = no key (Kafka's default partitioner spreads
	// the records).
	Key string
}

// NATSSinkSpec is a nats sink's options (connectors/nats.SinkOptions).
type NATSSinkSpec struct {
	URL             string
	Stream          string // "" = the stream that captures Subject
	Subject         string
	Name            string // default DefaultNATSSinkName
	UserEnv         string
	PasswordEnv     string
	TokenEnv        string
	MaxPendingBytes int // default DefaultNATSMaxPendingBytes
	// ReconnectTimeout: a lost connection not back by then fails the job
	// (default DefaultNATSReconnectTimeout).
	ReconnectTimeout time.Duration
}

// Meta is where a connector source's message came from: the values of
// the reserved fields (MetaFields) a schema may declare. Which members
// are set depends on the source type.
type Meta struct {
	Key []byte // kafka: the record's key
	// Headers are a Kafka record's headers, in their order: Headers[2i]
	// is a name, Headers[2i+1] its value.
	Headers     [][]byte
	Topic       string // kafka
	Partition   int64  // kafka
	Offset      int64  // kafka
	Subject     string // nats
	Seq         int64  // nats: the stream sequence
	TimestampMs int64  // kafka: the record's timestamp; nats: when the stream stored the message
}

// The reserved metadata fields of connector sources. A source's `fields:`
// may declare them, with exactly this type, to get a message's metadata;
// all other fields come from the JSON value. They are ordinary fields from
// then on (`event_time: {field: _timestamp}`, `key_by: _key`).
const (
	MetaKey       = "_key"
	MetaHeaders   = "_headers"
	MetaTopic     = "_topic"
	MetaPartition = "_partition"
	MetaOffset    = "_offset"
	MetaSubject   = "_subject"
	MetaSeq       = "_seq"
	MetaTimestamp = "_timestamp"
)

type metaField struct {
	name string
	typ  Type
}

// metaFields lists the reserved fields of each source type, in the order
// of Meta.
var metaFields = map[string][]metaField{
	SourceKafka: {{MetaKey, TypeString}, {MetaHeaders, TypeString}, {MetaTopic, TypeString}, {MetaPartition, TypeInt}, {MetaOffset, TypeInt}, {MetaTimestamp, TypeInt}},
	SourceNATS:  {{MetaSubject, TypeString}, {MetaSeq, TypeInt}, {MetaTimestamp, TypeInt}},
}

// MetaFields returns the reserved metadata field names of a source type
// and their types ("" for types without any).
func MetaFields(sourceType string) map[string]Type {
	m := make(map[string]Type, len(metaFields[sourceType]))
	for _, f := range metaFields[sourceType] {
		m[f.name] = f.typ
	}
	return m
}

// isConnectorSource reports whether a source type reads a real system
// whose records have the schema of `fields:`: JSON values decoded against
// it (kafka, nats), or a table's columns of the fields' names (postgres).
func isConnectorSource(t string) bool {
	return t == SourceKafka || t == SourceNATS || t == SourcePostgres
}

// hasFields reports whether a source type declares its schema in `fields:`.
func hasFields(t string) bool { return t == SourceFile || isConnectorSource(t) }

// MessageDecoder decodes a connector source's messages into rows of the
// source's schema: the JSON value into the declared fields (Schema.DecodeJSON
// over the fields that are not metadata, in their slots of the full
// schema), and the metadata into the reserved fields declared. It is
// immutable and safe for concurrent use.
type MessageDecoder struct {
	value *Schema
	// slots of the declared metadata fields, -1 where not declared.
	key, headers, topic, partition, offset, subject, seq, timestamp int
}

// NewMessageDecoder returns the decoder of a source of type sourceType
// whose records have schema.
func NewMessageDecoder(sourceType string, schema *Schema) *MessageDecoder {
	d := &MessageDecoder{value: &Schema{}, key: -1, headers: -1, topic: -1, partition: -1, offset: -1, subject: -1, seq: -1, timestamp: -1}
	meta := MetaFields(sourceType)
	for _, f := range schema.Fields {
		t, ok := meta[f.Name]
		if !ok {
			d.value.Fields = append(d.value.Fields, f)
			continue
		}
		if t != f.Type {
			panic(fmt.Sprintf("job: metadata field %s is %v in schema %s, not %v, and validation accepted it", f.Name, f.Type, schema, t))
		}
		switch f.Name {
		case MetaKey:
			d.key = f.Slot
		case MetaHeaders:
			d.headers = f.Slot
		case MetaTopic:
			d.topic = f.Slot
		case MetaPartition:
			d.partition = f.Slot
		case MetaOffset:
			d.offset = f.Slot
		case MetaSubject:
			d.subject = f.Slot
		case MetaSeq:
			d.seq = f.Slot
		case MetaTimestamp:
			d.timestamp = f.Slot
		}
	}
	return d
}

// Decode fills r from one message: value is its payload, one JSON object.
// Errors wrap ErrBadRecord (Schema.DecodeJSON); the caller adds where the
// message came from. Only the JSON's strings and a declared _key allocate.
func (d *MessageDecoder) Decode(value []byte, m *Meta, r *Row) error {
	if err := d.value.DecodeJSON(value, r); err != nil {
		return err
	}
	if d.key >= 0 {
		r.Str[d.key] = string(m.Key)
	}
	if d.headers >= 0 {
		r.Str[d.headers] = string(appendHeaders(nil, m.Headers))
	}
	if d.topic >= 0 {
		r.Str[d.topic] = m.Topic
	}
	if d.partition >= 0 {
		r.SetInt(d.partition, m.Partition)
	}
	if d.offset >= 0 {
		r.SetInt(d.offset, m.Offset)
	}
	if d.subject >= 0 {
		r.Str[d.subject] = m.Subject
	}
	if d.seq >= 0 {
		r.SetInt(d.seq, m.Seq)
	}
	if d.timestamp >= 0 {
		r.SetInt(d.timestamp, m.TimestampMs)
	}
	return nil
}

// AppendKeyText appends field f of r as a message key: a string's bytes as
// they are, a number or bool as its JSON text (what AppendJSON writes for
// it). It does not allocate when dst has room.
func (s *Schema) AppendKeyText(dst []byte, r *Row, f Field) []byte {
	switch f.Type {
	case TypeString:
		return append(dst, r.Str[f.Slot]...)
	case TypeInt:
		return strconv.AppendInt(dst, r.Int(f.Slot), 10)
	case TypeFloat:
		return appendJSONFloat(dst, r.Float(f.Slot))
	case TypeBool:
		return strconv.AppendBool(dst, r.Bool(f.Slot))
	}
	panic(fmt.Sprintf("job: AppendKeyText: field %s has invalid type %v", f.Name, f.Type))
}

// Option keys of the connector sources and sinks.
var (
	connSourceKeys = map[string][]string{
		SourceKafka: {"brokers", "topics", "start_from", "start_timestamp", "group", "commit_to_group", "bounded", "discovery_interval", "user_env", "password_env"},
		SourceNATS:  {"url", "stream", "subjects", "bounded", "start_seq", "user_env", "password_env", "token_env", "reconnect_timeout"},
		// columns is not an option: it is there to say so (postgresSource).
		SourcePostgres: {"url", "password_env", "table", "column", "columns", "bounded", "poll_interval", "batch_rows", "timeout"},
	}
	connSinkKeys = map[string][]string{
		SinkKafka: {"brokers", "topic", "id", "transaction_timeout", "user_env", "password_env", "key"},
		SinkNATS:  {"url", "stream", "subject", "name", "user_env", "password_env", "token_env", "max_pending_bytes", "reconnect_timeout"},
		SinkPostgres: {"url", "password_env", "table", "columns", "key", "mode", "name", "batch_rows", "max_buffered_rows",
			"timeout", "progress_table"},
	}
	// validSinkTypes are every sink type.
	validSinkTypes = []string{SinkFile, SinkStdout, SinkBlackhole, SinkKafka, SinkNATS, SinkPostgres}
	// nonConnSourceKeys are the options of the built-in sources, which a
	// connector source does not take.
	nonConnSourceKeys = []string{"count", "keys", "rate", "path", "events"}
)

// credentialKeys are the keys that would write a secret into a spec: they
// are refused with a pointer to the *_env option that names an
// environment variable instead.
var credentialKeys = map[string]string{
	"password": "password_env", "passwd": "password_env", "pass": "password_env", "secret": "password_env",
	"sasl_password": "password_env", "user": "user_env", "username": "user_env", "token": "token_env",
	"credentials": "user_env and password_env",
}

// credential reports (and returns true for) a key that would hold a
// secret. Such keys are errors wherever they appear in a source or sink.
func (d *decoder) credential(x entry, nats bool) bool {
	env, ok := credentialKeys[x.key]
	if !ok {
		return false
	}
	if env == "token_env" && !nats {
		env = "password_env"
	}
	d.fail(x.kpos, x.path, "credentials are never written in a spec: put the value in an environment variable and name it with %s", env)
	return true
}

// isConnKey reports whether key is an option of some connector's source
// (sink when sink is true), and of which types.
func isConnKey(key string, sink bool) (types []string) {
	m := connSourceKeys
	if sink {
		m = connSinkKeys
	}
	for t, keys := range m {
		if slices.Contains(keys, key) {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	return types
}

// connSource decodes one option of a kafka, nats or postgres source; typ
// is the source's type. It reports false when x is not such an option.
func (d *decoder) connSource(x entry, src *SourceSpec, typ string) bool {
	types := isConnKey(x.key, false)
	if len(types) == 0 {
		return false
	}
	if !slices.Contains(types, typ) {
		if typ != "" {
			d.fail(x.kpos, x.path, "not used by a %s source (it is an option of %s sources)", typ, strings.Join(types, " and "))
		}
		return true
	}
	switch typ {
	case SourceKafka:
		k := src.Kafka
		switch x.key {
		case "brokers":
			k.Brokers, _ = d.strs(x)
		case "topics":
			k.Topics, _ = d.strs(x)
		case "start_from":
			k.StartFrom, _ = d.str(x)
		case "start_timestamp":
			k.StartTimestampMs, _ = d.timestampMs(x)
		case "group":
			k.Group, _ = d.str(x)
		case "commit_to_group":
			k.CommitToGroup, _ = d.bool(x)
		case "bounded":
			k.Bounded, _ = d.bool(x)
		case "discovery_interval":
			if v, ok := d.duration(x); ok {
				k.DiscoveryInterval = v
			}
		case "user_env":
			k.UserEnv, _ = d.str(x)
		case "password_env":
			k.PasswordEnv, _ = d.str(x)
		}
	case SourceNATS:
		n := src.NATS
		switch x.key {
		case "url":
			n.URL, _ = d.str(x)
		case "stream":
			n.Stream, _ = d.str(x)
		case "subjects":
			n.Subjects, _ = d.strs(x)
		case "bounded":
			n.Bounded, _ = d.bool(x)
		case "start_seq":
			n.StartSeq, _ = d.int(x)
		case "user_env":
			n.UserEnv, _ = d.str(x)
		case "password_env":
			n.PasswordEnv, _ = d.str(x)
		case "token_env":
			n.TokenEnv, _ = d.str(x)
		case "reconnect_timeout":
			if v, ok := d.duration(x); ok {
				n.ReconnectTimeout = v
			}
		}
	case SourcePostgres:
		d.postgresSource(x, src.Postgres)
	}
	return true
}

// newConnSource prepares src for the options of its type and returns the
// required keys of that type.
func newConnSource(src *SourceSpec) []string {
	switch src.Type {
	case SourceKafka:
		src.Kafka = &KafkaSourceSpec{StartFrom: KafkaStartEarliest, DiscoveryInterval: DefaultKafkaDiscoveryInterval}
		return []string{"brokers", "topics", "fields"}
	case SourceNATS:
		src.NATS = &NATSSourceSpec{ReconnectTimeout: DefaultNATSReconnectTimeout}
		return []string{"stream", "fields"}
	case SourcePostgres:
		src.Postgres = &PostgresSourceSpec{BatchRows: DefaultPostgresSourceBatchRows, PollInterval: DefaultPostgresPollInterval,
			Timeout: DefaultPostgresTimeout}
		return []string{"url", "table", "column", "fields"}
	}
	return nil
}

// newConnSink prepares sk for the options of its type and returns the
// required keys of that type.
func newConnSink(sk *SinkSpec) []string {
	switch sk.Type {
	case SinkKafka:
		sk.Kafka = &KafkaSinkSpec{ID: DefaultKafkaSinkID, TransactionTimeout: DefaultKafkaTransactionTimeout}
		return []string{"brokers", "topic"}
	case SinkNATS:
		sk.NATS = &NATSSinkSpec{Name: DefaultNATSSinkName, MaxPendingBytes: DefaultNATSMaxPendingBytes, ReconnectTimeout: DefaultNATSReconnectTimeout}
		return []string{"subject"}
	case SinkPostgres:
		sk.Postgres = &PostgresSinkSpec{Mode: PostgresAppend, BatchRows: DefaultPostgresBatchRows,
			MaxBufferedRows: DefaultPostgresMaxBufferedRows, Timeout: DefaultPostgresTimeout}
		return []string{"url", "table"}
	}
	return nil
}

// connSink decodes one option of a kafka or nats sink.
func (d *decoder) connSink(x entry, sk *SinkSpec) bool {
	types := isConnKey(x.key, true)
	if len(types) == 0 {
		return false
	}
	if !slices.Contains(types, sk.Type) {
		if sk.Type != "" {
			d.fail(x.kpos, x.path, "not used by a %s sink (it is an option of %s sinks)", sk.Type, strings.Join(types, " and "))
		}
		return true
	}
	switch sk.Type {
	case SinkKafka:
		k := sk.Kafka
		switch x.key {
		case "brokers":
			k.Brokers, _ = d.strs(x)
		case "topic":
			k.Topic, _ = d.str(x)
		case "id":
			if v, ok := d.str(x); ok {
				k.ID = v
			}
		case "transaction_timeout":
			if v, ok := d.duration(x); ok {
				k.TransactionTimeout = v
			}
		case "user_env":
			k.UserEnv, _ = d.str(x)
		case "password_env":
			k.PasswordEnv, _ = d.str(x)
		case "key":
			k.Key, _ = d.str(x)
		}
	case SinkNATS:
		n := sk.NATS
		switch x.key {
		case "url":
			n.URL, _ = d.str(x)
		case "stream":
			n.Stream, _ = d.str(x)
		case "subject":
			n.Subject, _ = d.str(x)
		case "name":
			if v, ok := d.str(x); ok {
				n.Name = v
			}
		case "user_env":
			n.UserEnv, _ = d.str(x)
		case "password_env":
			n.PasswordEnv, _ = d.str(x)
		case "token_env":
			n.TokenEnv, _ = d.str(x)
		case "max_pending_bytes":
			if v, ok := d.int(x); ok {
				n.MaxPendingBytes = int(min(max(v, -1), NATSMaxPendingBytesLimit+1))
			}
		case "reconnect_timeout":
			if v, ok := d.duration(x); ok {
				n.ReconnectTimeout = v
			}
		}
	case SinkPostgres:
		d.postgresSink(x, sk.Postgres)
	}
	return true
}

// strs decodes a sequence of strings.
func (d *decoder) strs(e entry) ([]string, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return nil, false
	}
	d.spec.pos[e.path] = e.vpos
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(e.vpos, e.path, "want a sequence of strings such as [a, b], got %s", describe(n))
		return nil, false
	}
	out := make([]string, 0, len(seq.Values))
	good := true
	for i, v := range seq.Values {
		item := entry{path: fmt.Sprintf("%s[%d]", e.path, i), vpos: posOf(v), value: v}
		if _, isMap := v.(*ast.MappingNode); isMap {
			// YAML reads host:port in a flow sequence as a mapping.
			d.fail(item.vpos, item.path, "want a string, got a mapping (quote an address: \"host:9092\")")
			good = false
			out = append(out, "") // the item's path is bad: validation skips it
			continue
		}
		s, ok := d.str(item)
		good = good && ok
		out = append(out, s)
	}
	return out, good
}

// timestampMs decodes a point in time: RFC 3339 text, or an integer of ms
// since the epoch.
func (d *decoder) timestampMs(e entry) (int64, bool) {
	n, ok := d.plain(e.value, e.path)
	if !ok {
		return 0, false
	}
	d.spec.pos[e.path] = e.vpos
	switch n := n.(type) {
	case *ast.IntegerNode:
		return d.int(e)
	case *ast.StringNode:
		t, err := time.Parse(time.RFC3339Nano, n.Value)
		if err != nil {
			d.fail(e.vpos, e.path, "invalid timestamp %s: want RFC 3339 (2024-05-01T12:00:00Z) or ms since the epoch", quoteShort(n.Value))
			return 0, false
		}
		return t.UnixMilli(), true
	}
	d.fail(e.vpos, e.path, "want a timestamp (RFC 3339 text, or an integer of ms since the epoch), got %s", describe(n))
	return 0, false
}

// connSource checks the options of a kafka, nats or postgres source at
// path.
func (v *validator) connSource(path string, src *SourceSpec) {
	at := func(field string, bad bool, format string, args ...any) {
		p := path + "." + field
		if bad && !v.skip(p) {
			v.errAt(p, src.Line, src.Column, format, args...)
		}
	}
	switch src.Type {
	case SourceKafka:
		k := src.Kafka
		if k == nil {
			return
		}
		v.strList(path+".brokers", k.Brokers, src, "broker address (host:port)", func(s string) bool { return s != "" })
		v.strList(path+".topics", k.Topics, src, "topic name", validKafkaTopic)
		switch k.StartFrom {
		case KafkaStartEarliest, KafkaStartLatest, KafkaStartTimestamp, KafkaStartGroup:
		default:
			at("start_from", true, "unknown start %s: want earliest, latest, timestamp or group", quoteShort(k.StartFrom))
		}
		_, hasTS := v.s.pos[path+".start_timestamp"]
		at("start_timestamp", k.StartFrom == KafkaStartTimestamp && !hasTS, "start_from: timestamp needs start_timestamp (RFC 3339 or ms since the epoch)")
		at("start_timestamp", k.StartFrom != KafkaStartTimestamp && hasTS, "only used with start_from: timestamp")
		at("start_timestamp", hasTS && k.StartTimestampMs < 0, "must not be before 1970, got %d ms", k.StartTimestampMs)
		_, hasGroup := v.s.pos[path+".group"]
		at("group", k.StartFrom == KafkaStartGroup && k.Group == "", "start_from: group needs a consumer group name")
		at("group", k.StartFrom != KafkaStartGroup && !k.CommitToGroup && hasGroup, "only used with start_from: group or commit_to_group: true (offsets live in checkpoints)")
		at("commit_to_group", k.CommitToGroup && k.Group == "", "commit_to_group needs a consumer group name in group")
		_, hasDisc := v.s.pos[path+".discovery_interval"]
		at("discovery_interval", k.DiscoveryInterval <= 0, "must be > 0, got %v", k.DiscoveryInterval)
		at("discovery_interval", k.Bounded && hasDisc, "a bounded source reads the partitions it found at its first start and discovers none")
		v.envPair(path, k.UserEnv, k.PasswordEnv, src.Line, src.Column)
	case SourceNATS:
		n := src.NATS
		if n == nil {
			return
		}
		at("stream", n.Stream == "" || strings.ContainsAny(n.Stream, ". *>\t\r\n"), "invalid stream name %s: no dots, spaces or wildcards", quoteShort(n.Stream))
		if n.Subjects != nil {
			v.strList(path+".subjects", n.Subjects, src, "subject filter", func(s string) bool { return s != "" && !strings.ContainsAny(s, " \t\r\n") })
		}
		at("start_seq", n.StartSeq < 0, "must be >= 0 (0 = from the beginning), got %d", n.StartSeq)
		at("reconnect_timeout", n.ReconnectTimeout <= 0, "must be > 0, got %v", n.ReconnectTimeout)
		v.envPair(path, n.UserEnv, n.PasswordEnv, src.Line, src.Column)
		v.envName(path+".token_env", n.TokenEnv, src.Line, src.Column)
		v.natsURL(path+".url", n.URL, src.Line, src.Column)
	case SourcePostgres:
		v.postgresSource(path, src)
	}
}

// metaField checks the reserved metadata fields a connector source
// declares: their types must be the metadata's. It reports whether f is
// one.
func (v *validator) metaField(path string, src *SourceSpec, f FieldSpec) bool {
	t, ok := MetaFields(src.Type)[f.Name]
	if !ok {
		return false
	}
	if f.Type != t {
		v.errAt(path, src.Line, src.Column, "%s is the record's metadata %s, of type %v: declare it as %v", f.Name, strings.TrimPrefix(f.Name, "_"), t, t)
	}
	return true
}

// connSink checks the options of a kafka or nats sink.
func (v *validator) connSink(sk *SinkSpec) {
	at := func(field string, bad bool, format string, args ...any) {
		p := "sink." + field
		if bad && !v.skip(p) {
			v.errAt(p, sk.Line, sk.Column, format, args...)
		}
	}
	cp := v.s.Checkpointing
	switch sk.Type {
	case SinkKafka:
		k := sk.Kafka
		if k == nil {
			return
		}
		v.strList("sink.brokers", k.Brokers, &SourceSpec{Line: sk.Line, Column: sk.Column}, "broker address (host:port)", func(s string) bool { return s != "" })
		at("topic", !validKafkaTopic(k.Topic), "invalid topic name %s", quoteShort(k.Topic))
		if msg := checkName(k.ID, "sink"); msg != "" {
			at("id", true, "%s", msg)
		}
		at("transaction_timeout", k.TransactionTimeout < MinKafkaTransactionTimeout, "must be at least %v, got %v", MinKafkaTransactionTimeout, k.TransactionTimeout)
		if msg := checkFieldName(k.Key); k.Key != "" && msg != "" {
			at("key", true, "%s", msg)
		}
		v.envPair("sink", k.UserEnv, k.PasswordEnv, sk.Line, sk.Column)
		if cp == nil || v.skip("checkpointing") {
			return
		}
		// kafka.CheckTransactionTimeout's rule (jobrun calls it too).
		if need := cp.Interval + cp.Timeout; cp.Interval > 0 && cp.Timeout > 0 && k.TransactionTimeout >= MinKafkaTransactionTimeout && k.TransactionTimeout < need {
			at("transaction_timeout", true, "%v is shorter than the checkpoint interval plus the checkpoint timeout (%v + %v = %v): "+
				"the broker would abort transactions before their checkpoint completes and their output would be lost; "+
				"raise transaction_timeout (and the broker's transaction.max.timeout.ms) or lower checkpointing.interval or timeout",
				k.TransactionTimeout, cp.Interval, cp.Timeout, need)
		}
		if cp.MaxConcurrent > 1 && !v.skip("checkpointing.max_concurrent") {
			v.errAt("checkpointing.max_concurrent", cp.Line, cp.Column, "a kafka sink needs max_concurrent: 1: a task has one transaction at a time, "+
				"so a second checkpoint in flight would add its records to the transaction of the first, and a recovery from the first would commit them too")
		}
	case SinkNATS:
		n := sk.NATS
		if n == nil {
			return
		}
		at("subject", !validNATSSubject(n.Subject), "invalid subject %s: tokens separated by dots, no wildcards or spaces", quoteShort(n.Subject))
		at("stream", n.Stream != "" && strings.ContainsAny(n.Stream, ". *>\t\r\n"), "invalid stream name %s: no dots, spaces or wildcards", quoteShort(n.Stream))
		if msg := checkName(n.Name, "sink"); msg != "" {
			at("name", true, "%s", msg)
		}
		at("max_pending_bytes", n.MaxPendingBytes < MinNATSMaxPendingBytes || n.MaxPendingBytes > NATSMaxPendingBytesLimit,
			"must be between %d and %d, got %d", MinNATSMaxPendingBytes, NATSMaxPendingBytesLimit, n.MaxPendingBytes)
		at("reconnect_timeout", n.ReconnectTimeout <= 0, "must be > 0, got %v", n.ReconnectTimeout)
		v.envPair("sink", n.UserEnv, n.PasswordEnv, sk.Line, sk.Column)
		v.envName("sink.token_env", n.TokenEnv, sk.Line, sk.Column)
		v.natsURL("sink.url", n.URL, sk.Line, sk.Column)
	case SinkPostgres:
		v.postgresSink(sk)
	}
}

// strList checks a required, non-empty list of strings, each good.
func (v *validator) strList(path string, list []string, at *SourceSpec, what string, good func(string) bool) {
	if v.skip(path) {
		return
	}
	if len(list) == 0 {
		v.errAt(path, at.Line, at.Column, "want at least one %s", what)
		return
	}
	for i, s := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		if !v.skip(p) && !good(s) {
			v.errAt(p, at.Line, at.Column, "invalid %s %s", what, quoteShort(s))
		}
	}
}

// envPair checks user_env and password_env, which go together.
func (v *validator) envPair(path, user, pass string, line, col int) {
	v.envName(path+".user_env", user, line, col)
	v.envName(path+".password_env", pass, line, col)
	if (user == "") != (pass == "") {
		missing := path + ".password_env"
		if user == "" {
			missing = path + ".user_env"
		}
		if !v.skip(path+".user_env") && !v.skip(path+".password_env") {
			v.errAt(missing, line, col, "user_env and password_env go together")
		}
	}
}

// envName checks the name of an environment variable (not its value: that
// is read when the job starts).
func (v *validator) envName(path, name string, line, col int) {
	if name == "" || v.skip(path) {
		return
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		v.errAt(path, line, col, "invalid environment variable name %s: name the variable that holds the secret, not the secret", quoteShort(name))
		return
	}
}

// natsURL refuses a server URL that carries credentials.
func (v *validator) natsURL(path, url string, line, col int) {
	if v.skip(path) {
		return
	}
	for _, s := range strings.Split(url, ",") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(s), "nats://"); ok && strings.Contains(rest, "@") ||
			!ok && strings.Contains(s, "@") {
			v.errAt(path, line, col, "the URL holds credentials: name environment variables with user_env and password_env (or token_env) instead")
			return
		}
	}
}

func validKafkaTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c == '.' || c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func validNATSSubject(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}

// sinkKey checks that a kafka sink's key field is a field of the records
// that reach the sink.
func (c *compiler) sinkKey() {
	sk := &c.s.Sink
	if c.plan == nil || sk.Kafka == nil || sk.Kafka.Key == "" || c.broken["sink"] {
		return
	}
	if _, ok := c.plan.SinkSchema.Lookup(sk.Kafka.Key); !ok {
		c.errAt("sink.key", c.s.posOf("sink.key", sk.Line, sk.Column), "unknown field %q; the records that reach the sink are %s", sk.Kafka.Key, c.plan.SinkSchema)
	}
}

// WantsHeaders reports whether the schema declares _headers: only then
// need the caller fill Meta.Headers.
func (d *MessageDecoder) WantsHeaders() bool { return d.headers >= 0 }

// appendHeaders appends a Kafka record's headers as a JSON object, name to
// value, in their order; a name that repeats appears as often as it
// repeats (Kafka allows it). Values are text: invalid UTF-8 becomes
// U+FFFD (jsonx.AppendString).
func appendHeaders(dst []byte, h [][]byte) []byte {
	dst = append(dst, '{')
	for i := 0; i+1 < len(h); i += 2 {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonx.AppendString(dst, string(h[i]))
		dst = append(dst, ':')
		dst = jsonx.AppendString(dst, string(h[i+1]))
	}
	return append(dst, '}')
}
