package job

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func pgTestRow(t testing.TB) (*Schema, *Row) {
	t.Helper()
	s, err := NewSchema([]FieldSpec{{"user", TypeString}, {"n", TypeInt}, {"ratio", TypeFloat}, {"ok", TypeBool}})
	if err != nil {
		t.Fatal(err)
	}
	var r Row
	f := func(name string) Field { x, _ := s.Lookup(name); return x }
	r.Str[f("user").Slot] = "ann"
	r.SetInt(f("n").Slot, -1_000_000_007)
	r.SetFloat(f("ratio").Slot, 0.25)
	r.SetBool(f("ok").Slot, true)
	return s, &r
}

// AppendColumnValues gives each field as the Go type pgx encodes into
// the column: int64, float64, bool, string; in the order of the fields
// asked for, appended to what dst holds.
func TestAppendColumnValues(t *testing.T) {
	s, r := pgTestRow(t)
	rev := []Field{s.Fields[3], s.Fields[2], s.Fields[1], s.Fields[0]}
	got := AppendColumnValues([]any{"before"}, r, rev)
	want := []any{"before", true, 0.25, int64(-1_000_000_007), "ann"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("AppendColumnValues = %#v, want %#v", got, want)
	}
	r.SetFloat(s.Fields[2].Slot, math.Inf(-1))
	if got := AppendColumnValues(nil, r, s.Fields[2:3]); got[0] != math.Inf(-1) {
		t.Fatalf("float -Inf came out as %#v", got[0])
	}
}

// The values are boxed into interfaces, which allocates for a string, an
// int64 of 256 or more and a float64 other than 0 (the runtime keeps
// small integers and bools preboxed): three here, and none for dst.
func TestAppendColumnValuesAllocs(t *testing.T) {
	s, r := pgTestRow(t)
	dst := make([]any, 0, len(s.Fields))
	allocs := testing.AllocsPerRun(100, func() { dst = AppendColumnValues(dst[:0], r, s.Fields) })
	if allocs != 3 {
		t.Fatalf("%v allocations per row, want 3 (string, int64, float64)", allocs)
	}
	r.Str[0], r.Num[0], r.Num[1] = "", 7, 0
	if allocs := testing.AllocsPerRun(100, func() { dst = AppendColumnValues(dst[:0], r, s.Fields) }); allocs != 0 {
		t.Fatalf("%v allocations for a row of small values, want 0", allocs)
	}
}

func BenchmarkAppendColumnValues(b *testing.B) {
	s, r := pgTestRow(b)
	dst := make([]any, 0, len(s.Fields))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendColumnValues(dst[:0], r, s.Fields)
	}
}

func TestPostgresURLProblem(t *testing.T) {
	f := func(url, want string) {
		t.Helper()
		got := postgresURLProblem(url)
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Fatalf("postgresURLProblem(%q) = %q, want %q", url, got, want)
		}
		if strings.Contains(got, "hunter2") {
			t.Fatalf("postgresURLProblem(%q) repeats the password: %q", url, got)
		}
	}
	f("postgres://streamd@127.0.0.1:5432/app?sslmode=disable", "")
	f("postgresql://db/app", "")
	f("postgres:///app?host=/var/run/postgresql", "")
	f("host=db user=streamd dbname=app", "")
	f("host=db passfile=/etc/pgpass", "")
	f("postgres://streamd:hunter2@db/app", "password_env")
	f("postgres://streamd:@db/app", "password_env")
	f("postgresql://db/app?password=hunter2", "password_env")
	f("postgres://db/app?sslmode=require&PASSWORD=hunter2", "password_env")
	f("host=db password=hunter2", "password_env")
	f("host=db Password = hunter2", "password_env")
	f("password =hunter2 host=db", "password_env")
	f("host=db passwordless=1", "") // not a password key
	f("postgres://db:%zz/hunter2", "does not parse")
	f("", "must not be empty")
	f("   ", "must not be empty")
	f("db.example.com", "want a URL")
}

func TestPostgresTableProblem(t *testing.T) {
	for _, ok := range []string{"t", "public.counts", "Counts", "a b", strings.Repeat("x", 63) + "." + strings.Repeat("y", 63)} {
		if msg := postgresTableProblem(ok); msg != "" {
			t.Errorf("postgresTableProblem(%q) = %q, want ok", ok, msg)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a.b.c", `a"b`, "a\x00b", strings.Repeat("x", 64)} {
		if msg := postgresTableProblem(bad); msg == "" {
			t.Errorf("postgresTableProblem(%q) accepted it", bad)
		}
	}
}

// PostgresColumns follows the spec's columns, in their order, and is every
// field of the sink's records without them.
func TestPostgresColumns(t *testing.T) {
	load := func(columns string) []string {
		t.Helper()
		p, err := Load("pg.yaml", []byte(`name: pg
source: {type: sequence, count: 10, keys: 2}
pipeline: [{map: {x: "seq * 2"}}]
sink: {type: postgres, url: "postgres://db/app", table: t`+columns+`}
`))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range p.PostgresColumns() {
			names = append(names, f.Name)
		}
		return names
	}
	if got := load(""); !reflect.DeepEqual(got, []string{"key", "seq", "x"}) {
		t.Errorf("default columns %v", got)
	}
	if got := load(", columns: [x, key]"); !reflect.DeepEqual(got, []string{"x", "key"}) {
		t.Errorf("columns [x, key] gave %v", got)
	}
}

// FuzzPostgresURLProblem checks the spec's password check against the
// connector's parser (pgconn): every connection string from which pgconn
// reads a password is refused. (The messages are constant text: none can
// repeat a password.)
func FuzzPostgresURLProblem(f *testing.F) {
	f.Setenv("PGPASSWORD", "")
	f.Setenv("PGPASSFILE", "/nonexistent/pgpass")
	f.Setenv("PGSERVICEFILE", "/nonexistent/pg_service.conf")
	for _, s := range []string{"postgres://u:p@h/db", "postgres://h/db?password=p", "host=h password=p", "host=h password = 'p q'",
		"postgresql://u@h:5432/db?sslmode=disable", "host=h user=u", "postgres://u:%70@h/db"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if postgresURLProblem(s) != "" {
			return
		}
		cfg, err := pgconn.ParseConfig(s)
		if err == nil && cfg.Password != "" {
			t.Fatalf("postgresURLProblem(%q) accepts it, and pgconn reads the password %q from it", s, cfg.Password)
		}
	})
}
