package file

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/streamd/streamd/engine"
)

var errNotJSON = errors.New("not a JSON value")

// decodeLine accepts one JSON value with no line ending left on it and
// keeps the line. Every record line of the fixtures is a flat JSON object,
// so no proper suffix of a line decodes.
func decodeLine(line []byte, v *string) error {
	if strings.ContainsAny(string(line), "\r\n") {
		return fmt.Errorf("line ending left on %q", line)
	}
	if len(line) == 0 || line[0] != '{' || !jsonValid(line) {
		return errNotJSON
	}
	*v = string(line)
	return nil
}

func jsonValid(b []byte) bool {
	// A flat object of string/number fields is enough for the fixtures;
	// checking the braces and quotes keeps the decoder strict without
	// depending on encoding/json's speed in the fuzz loop.
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	inStr := false
	for _, c := range b[1 : len(b)-1] {
		switch {
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '{' || c == '}'):
			return false
		}
	}
	return !inStr
}

func record(file string, n int) string { return fmt.Sprintf(`{"f":%q,"n":%d}`, file, n) }

// fixture is a set of input files and the records they hold, in order.
type fixture struct {
	dir     string
	files   []string // sorted paths
	records []string
}

// writeInput writes name with the given raw content into dir.
func writeInput(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newFixture writes files with every awkward case: blank and
// whitespace-only lines, CRLF endings, a last line without a newline, an
// empty file, and (if long) a line longer than the read buffer.
func newFixture(t testing.TB, dir string, long bool) fixture {
	t.Helper()
	fx := fixture{dir: dir}
	add := func(name string, parts ...string) {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p)
		}
		fx.files = append(fx.files, writeInput(t, dir, name, b.String()))
	}
	var a []string
	for i := 0; i < 8; i++ {
		r := record("a", i)
		fx.records = append(fx.records, r)
		switch i % 4 {
		case 0:
			a = append(a, r, "\n")
		case 1:
			a = append(a, r, "\r\n", "\n") // CRLF, then a blank line
		case 2:
			a = append(a, r, "\n", "  \t \n", "\r\n") // whitespace-only, blank CRLF
		case 3:
			a = append(a, r, "\n")
		}
	}
	add("a.jsonl", a...)
	add("b.jsonl") // empty
	var c []string
	for i := 0; i < 6; i++ {
		r := record("c", i)
		if long && i == 2 {
			r = fmt.Sprintf(`{"f":"c","n":%d,"pad":"%s"}`, i, strings.Repeat("x", 300<<10))
		}
		fx.records = append(fx.records, r)
		c = append(c, r, "\n")
	}
	if long {
		r := fmt.Sprintf(`{"f":"c","n":6,"pad":"%s"}`, strings.Repeat("y", 260<<10))
		fx.records = append(fx.records, r)
		c = append(c, r, "\r\n")
	}
	add("c.jsonl", c...)
	var d []string
	for i := 0; i < 5; i++ {
		r := record("d", i)
		fx.records = append(fx.records, r)
		d = append(d, r)
		if i < 4 {
			d = append(d, "\n")
		}
	}
	add("d.jsonl", d...) // last line without a newline
	if long {
		r := fmt.Sprintf(`{"f":"e","n":0,"pad":"%s"}`, strings.Repeat("z", 270<<10))
		fx.records = append(fx.records, r)
		add("e.jsonl", "\n", r) // a long last line without a newline
	}
	return fx
}

func sctx(index, parallelism int) engine.SourceContext {
	return engine.SourceContext{Job: "job", Operator: "source", Index: index, Parallelism: parallelism}
}

func openSource(t testing.TB, path string, index, parallelism int, state []byte) (engine.Source[string], error) {
	t.Helper()
	src, err := NewSource(SourceOptions[string]{Path: path, Decode: decodeLine})(sctx(index, parallelism))
	if err != nil {
		t.Fatalf("NewSource(%s): %v", path, err)
	}
	if err := src.Open(sctx(index, parallelism), state); err != nil {
		src.Close()
		return nil, err
	}
	return src, nil
}

// readN reads up to max records (all if max < 0) with buffers of bufLen.
func readN(src engine.Source[string], bufLen, max int) ([]string, bool, error) {
	var out []string
	buf := make([]string, bufLen)
	for max < 0 || len(out) < max {
		b := buf
		if max >= 0 {
			b = buf[:min(bufLen, max-len(out))]
		}
		n, err := src.Read(b)
		out = append(out, b[:n]...)
		if errors.Is(err, io.EOF) {
			return out, true, nil
		}
		if err != nil {
			return out, false, err
		}
		if n == 0 {
			return out, false, errors.New("Read returned (0, nil): a file source always has data or EOF")
		}
	}
	return out, false, nil
}

func readAll(t testing.TB, src engine.Source[string], bufLen int) []string {
	t.Helper()
	out, _, err := readN(src, bufLen, -1)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"c.jsonl", "a.jsonl", "b.jsonl", "notes.txt", "a.jsonl.tmp", "z.json"} {
		writeInput(t, dir, n, "{}\n")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeInput(t, filepath.Join(dir, "sub"), "x.jsonl", "{}\n")
	j := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join(dir, n))
		}
		return out
	}
	f := func(path string, want []string) {
		t.Helper()
		got, err := Files(path)
		if err != nil {
			t.Fatalf("Files(%s): %v", path, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Files(%s): got %q, want %q", path, got, want)
		}
	}
	f(filepath.Join(dir, "notes.txt"), j("notes.txt")) // a file is read whatever its name
	f(dir, j("a.jsonl", "b.jsonl", "c.jsonl"))         // a directory: its *.jsonl, sorted
	f(filepath.Join(dir, "*.json*"), j("a.jsonl", "a.jsonl.tmp", "b.jsonl", "c.jsonl", "z.json"))
	f(filepath.Join(dir, "[bc].jsonl"), j("b.jsonl", "c.jsonl"))
	f(filepath.Join(dir, "*", "*.jsonl"), j("sub/x.jsonl"))

	fail := func(path, want string) {
		t.Helper()
		got, err := Files(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Files(%s): got (%q, %v), want an error containing %q", path, got, err, want)
		}
	}
	fail(filepath.Join(dir, "missing.jsonl"), "missing.jsonl")
	fail(filepath.Join(dir, "*.csv"), "no input file matches")
	fail(filepath.Join(dir, "[.jsonl"), "bad pattern")
}

func TestNewSourceErrors(t *testing.T) {
	dir := t.TempDir()
	writeInput(t, dir, "a.jsonl", "{}\n")
	if _, err := NewSource(SourceOptions[string]{Path: dir})(sctx(0, 1)); err == nil || !strings.Contains(err.Error(), "Decode") {
		t.Fatalf("NewSource without Decode: got %v", err)
	}
	missing := filepath.Join(dir, "nope")
	if _, err := NewSource(SourceOptions[string]{Path: missing, Decode: decodeLine})(sctx(0, 1)); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("NewSource of a missing path: got %v, want an error naming it", err)
	}
}

// Task j of p reads files j, j+p, …; together the tasks read every record
// once.
func TestSourceSplitsFilesOverTasks(t *testing.T) {
	dir := t.TempDir()
	const nfiles = 7
	for k := 0; k < nfiles; k++ {
		name := fmt.Sprintf("f%02d", k)
		writeInput(t, dir, name+".jsonl", record(name, 0)+"\n"+record(name, 1)+"\n")
	}
	for _, p := range []int{1, 2, 3, 7, 10} {
		var union []string
		for j := 0; j < p; j++ {
			src, err := openSource(t, dir, j, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, src, 3)
			src.Close()
			var want []string
			for k := j; k < nfiles; k += p {
				name := fmt.Sprintf("f%02d", k)
				want = append(want, record(name, 0), record(name, 1))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("task %d of %d: got %q, want %q", j, p, got, want)
			}
			union = append(union, got...)
		}
		if len(union) != 2*nfiles {
			t.Fatalf("parallelism %d: %d records in all, want %d", p, len(union), 2*nfiles)
		}
	}
}

func TestSourceReadsEveryLineOnceInOrder(t *testing.T) {
	fx := newFixture(t, t.TempDir(), true)
	for _, bufLen := range []int{1, 2, 3, 7, 64} {
		src, err := openSource(t, fx.dir, 0, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, src, bufLen)
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, fx.records) {
			t.Fatalf("buffer %d: got %d records %.60q, want %d %.60q", bufLen, len(got), got, len(fx.records), fx.records)
		}
		// Reading on after EOF stays at EOF.
		if n, err := src.Read(make([]string, 4)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("Read after EOF: got (%d, %v)", n, err)
		}
	}
}

// Position, then a new source opened at it, continues exactly after the
// last record returned: at every cut point, no loss and no duplicate.
func TestSourcePositionResumesExactly(t *testing.T) {
	fx := newFixture(t, t.TempDir(), true)
	for cut := 0; cut <= len(fx.records); cut++ {
		bufLen := 1 + cut%3
		src, err := openSource(t, fx.dir, 0, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		first, _, err := readN(src, bufLen, cut)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		pos, err := src.Position()
		if err != nil {
			t.Fatalf("cut %d: Position: %v", cut, err)
		}
		src.Close()
		if len(first) != cut {
			t.Fatalf("cut %d: read %d records", cut, len(first))
		}

		// A restarted task resumes twice from the same position (as after
		// two failures): both times the same rest.
		for again := 0; again < 2; again++ {
			src2, err := openSource(t, fx.dir, 0, 1, pos)
			if err != nil {
				t.Fatalf("cut %d: Open at %x: %v", cut, pos, err)
			}
			rest := readAll(t, src2, 4)
			src2.Close()
			if got := append(slices.Clone(first), rest...); !slices.Equal(got, fx.records) {
				t.Fatalf("cut %d (position %x): first %d + rest %d records differ from the %d of the input", cut, pos, len(first), len(rest), len(fx.records))
			}
		}
	}
}

// A position taken at EOF restores to EOF.
func TestSourcePositionAtEOF(t *testing.T) {
	fx := newFixture(t, t.TempDir(), false)
	src, err := openSource(t, fx.dir, 0, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, src, 5)
	pos, _ := src.Position()
	src.Close()
	src, err = openSource(t, fx.dir, 0, 1, pos)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if n, err := src.Read(make([]string, 4)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read at a restored EOF: got (%d, %v)", n, err)
	}
}

func TestSourceLineTooLong(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(record("big", 0) + "\n")
	f.WriteString(`{"pad":"`)
	f.Write(make([]byte, MaxLineBytes)) // NUL bytes: the content does not matter
	f.WriteString("\"}\n")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	src, err := openSource(t, path, 0, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got, _, err := readN(src, 4, -1)
	if err == nil || !strings.Contains(err.Error(), "longer than") || !strings.Contains(err.Error(), path+":2") {
		t.Fatalf("Read of a line over MaxLineBytes: got %v, want an error naming %s:2", err, path)
	}
	if !slices.Equal(got, []string{record("big", 0)}) {
		t.Fatalf("records before the long line: got %.60q", got)
	}
}

// A decode error names the file and the line (counting blank lines) and
// wraps the decoder's error.
func TestSourceDecodeErrorNamesFileAndLine(t *testing.T) {
	f := func(content string, wantLine int) {
		t.Helper()
		dir := t.TempDir()
		writeInput(t, dir, "a.jsonl", record("a", 0)+"\n")
		path := writeInput(t, dir, "b.jsonl", content)
		src, err := openSource(t, dir, 0, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		_, _, err = readN(src, 2, -1)
		want := fmt.Sprintf("%s:%d:", path, wantLine)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errNotJSON) {
			t.Fatalf("got %v, want an error containing %q that wraps %v", err, want, errNotJSON)
		}
	}
	f("bad\n", 1)
	f(record("b", 0)+"\n\n  \n"+"bad\n"+record("b", 1)+"\n", 4)
	f(record("b", 0)+"\r\n\r\nbad", 3)
	f(record("b", 0)+"\n"+strings.Repeat("q", 300<<10)+"\n", 2) // through the long-line path
}

func TestSourceBadRestoredPosition(t *testing.T) {
	fx := newFixture(t, t.TempDir(), false)
	pos := func(file, offset, line uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, file)
		b = binary.BigEndian.AppendUint64(b, offset)
		return binary.BigEndian.AppendUint64(b, line)
	}
	f := func(state []byte, want string) {
		t.Helper()
		src, err := openSource(t, fx.dir, 0, 1, state)
		if err == nil {
			// Some positions can only be checked against the file.
			_, _, err = readN(src, 4, -1)
			src.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("restore %x: got %v, want an error containing %q", state, err, want)
		}
	}
	nfiles := uint64(len(fx.files))
	f([]byte{}, "has 0 bytes")
	f(make([]byte, 23), "has 23 bytes")
	f(make([]byte, 25), "has 25 bytes")
	f(pos(nfiles+1, 0, 1), "does not fit")
	f(pos(math.MaxUint64, 0, 1), "does not fit")
	f(pos(1<<63, 0, 1), "does not fit")
	f(pos(0, 1<<63, 1), "does not fit")
	f(pos(0, 0, 0), "does not fit")
	f(pos(0, 0, 1<<63), "does not fit")
	f(pos(0, 1<<20, 1), "past the end")
}

// FuzzSourcePosition decodes arbitrary restored positions: Open and Read
// never panic, and whatever they accept yields a suffix of the input's
// records (a position is never trusted into duplicating or inventing
// records).
func FuzzSourcePosition(f *testing.F) {
	fx := newFixture(f, f.TempDir(), false)
	// Seeds: every position a real run produces, and some broken ones.
	src, err := openSource(f, fx.dir, 0, 1, nil)
	if err != nil {
		f.Fatal(err)
	}
	for {
		pos, _ := src.Position()
		f.Add(pos)
		n, err := src.Read(make([]string, 1))
		if err != nil || n == 0 {
			break
		}
	}
	src.Close()
	f.Add([]byte{})
	f.Add(make([]byte, 24))
	f.Add(binary.BigEndian.AppendUint64(make([]byte, 16), math.MaxUint64))
	f.Fuzz(func(t *testing.T, state []byte) {
		src, err := openSource(t, fx.dir, 0, 1, state)
		if err != nil {
			return
		}
		defer src.Close()
		got, _, err := readN(src, 3, -1)
		if err != nil {
			return
		}
		if len(got) > len(fx.records) || !slices.Equal(got, fx.records[len(fx.records)-len(got):]) {
			t.Fatalf("position %x yields %q, not a suffix of the input", state, got)
		}
	})
}
