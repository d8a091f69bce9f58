package file

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/streamd/streamd/engine"
)

// MaxLineBytes bounds one line of a JSON-lines input file.
const MaxLineBytes = 16 << 20

// SourceOptions configures a file source.
type SourceOptions[T any] struct {
	// Path is a file, a directory (its *.jsonl files), or a glob.
	Path string
	// Decode fills *v from one line (without the newline).
	Decode func(line []byte, v *T) error
}

// Files resolves a source path to its files, sorted.
func Files(path string) ([]string, error) {
	if st, err := os.Stat(path); err == nil {
		if !st.IsDir() {
			return []string{path}, nil
		}
		return globSorted(filepath.Join(path, "*.jsonl"))
	}
	files, err := globSorted(path)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("file: no input file matches %q", path)
	}
	return files, nil
}

func globSorted(pattern string) ([]string, error) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("file: bad pattern %q: %w", pattern, err)
	}
	sort.Strings(files)
	return files, nil
}

// NewSource returns a bounded plain source factory for engine.FromSource.
// The files are split over the tasks: task j of p reads files j, j+p, ….
// Its position is (file number, byte offset, line number), and a
// checkpoint of it restores only at the same parallelism; NewSplitSource
// is the rescalable form.
func NewSource[T any](opts SourceOptions[T]) func(engine.SourceContext) (engine.Source[T], error) {
	return func(ctx engine.SourceContext) (engine.Source[T], error) {
		if opts.Decode == nil {
			return nil, errors.New("file: source needs a Decode function")
		}
		all, err := Files(opts.Path)
		if err != nil {
			return nil, err
		}
		s := &source[T]{reader: reader[T]{opts: opts}}
		for _, f := range taskFiles(all, ctx.Index, ctx.Parallelism) {
			s.files = append(s.files, fileSplit{path: f, line: 1})
		}
		return s, nil
	}
}

// taskFiles returns the files of task index of parallelism: files index,
// index+parallelism, ….
func taskFiles(all []string, index, parallelism int) []string {
	var mine []string
	for i := index; i < len(all); i += parallelism {
		mine = append(mine, all[i])
	}
	return mine
}

// fileSplit is one input file and how far it has been read.
type fileSplit struct {
	path   string
	offset int64 // byte offset of the next line
	line   int64 // number of the next line (1-based)
	done   bool
}

// reader reads its files in order, each from its position; the plain
// source and the split reader share it.
type reader[T any] struct {
	opts  SourceOptions[T]
	files []fileSplit
	cur   int // index into files of the file being read
	f     *os.File
	br    *bufio.Reader
}

// source is the plain source: reader with the position of NewSource.
type source[T any] struct {
	reader[T]
}

func (s *source[T]) Open(_ engine.SourceContext, state []byte) error {
	if state == nil {
		return nil
	}
	fileNo, offset, line, err := decodePosition(state, len(s.files))
	if err != nil {
		return err
	}
	setPosition(s.files, fileNo, offset, line)
	s.cur = fileNo
	return nil
}

// decodePosition decodes the plain source's position over n files:
// (file number, byte offset, line number), 8 bytes big-endian each.
func decodePosition(state []byte, n int) (fileNo int, offset, line int64, err error) {
	if len(state) != 24 {
		return 0, 0, 0, fmt.Errorf("file: restored position has %d bytes, want 24", len(state))
	}
	no := binary.BigEndian.Uint64(state)
	offset = int64(binary.BigEndian.Uint64(state[8:]))
	line = int64(binary.BigEndian.Uint64(state[16:]))
	if no > uint64(n) || offset < 0 || line < 1 {
		return 0, 0, 0, fmt.Errorf("file: restored position (file %d, offset %d, line %d) does not fit the %d input files", int64(no), offset, line, n)
	}
	return int(no), offset, line, nil
}

// setPosition marks the files before fileNo done and puts file fileNo at
// (offset, line).
func setPosition(files []fileSplit, fileNo int, offset, line int64) {
	for i := range fileNo {
		files[i].done = true
	}
	if fileNo < len(files) {
		files[fileNo].offset, files[fileNo].line = offset, line
	}
}

func (s *source[T]) Position() ([]byte, error) {
	var b [24]byte
	cur := s.cur
	for cur < len(s.files) && s.files[cur].done {
		cur++
	}
	offset, line := int64(0), int64(1)
	if cur < len(s.files) {
		offset, line = s.files[cur].offset, s.files[cur].line
	}
	binary.BigEndian.PutUint64(b[:], uint64(cur))
	binary.BigEndian.PutUint64(b[8:], uint64(offset))
	binary.BigEndian.PutUint64(b[16:], uint64(line))
	return b[:], nil
}

// openFile opens the file being read at its position.
func (s *reader[T]) openFile() error {
	fs := &s.files[s.cur]
	f, err := os.Open(fs.path)
	if err != nil {
		return fmt.Errorf("file: cannot open input: %w", err)
	}
	if fs.offset > 0 {
		// Only a restored position starts inside a file; past the end, the
		// input changed since the checkpoint and records would be lost.
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("file: cannot stat %s: %w", fs.path, err)
		}
		if fs.offset > st.Size() {
			f.Close()
			return fmt.Errorf("file: restored position (offset %d) is past the end of %s (%d bytes): the input changed since the checkpoint", fs.offset, fs.path, st.Size())
		}
	}
	if _, err := f.Seek(fs.offset, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("file: cannot seek %s to %d: %w", fs.path, fs.offset, err)
	}
	s.f = f
	if s.br == nil {
		s.br = bufio.NewReaderSize(f, 256<<10)
	} else {
		s.br.Reset(f)
	}
	return nil
}

func (s *reader[T]) Read(buf []T) (int, error) {
	n := 0
	for n < len(buf) {
		for s.cur < len(s.files) && s.files[s.cur].done {
			s.cur++
		}
		if s.cur >= len(s.files) {
			return n, io.EOF
		}
		if s.f == nil {
			if err := s.openFile(); err != nil {
				return n, err
			}
		}
		fs := &s.files[s.cur]
		line, err := s.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Not `return n, s.readLong(…)`: the order in which n and the
			// call are evaluated is unspecified, and readLong updates n.
			err = s.readLong(buf, &n, line)
			return n, err
		}
		if len(line) > 0 {
			if err := s.decode(line, &buf[n]); err != nil {
				return n, err
			} else if !isBlank(line) {
				n++
			}
			fs.offset += int64(len(line))
			fs.line++
		}
		if err == io.EOF {
			s.f.Close()
			s.f = nil
			fs.done = true
			continue
		}
		if err != nil {
			return n, fmt.Errorf("file: cannot read %s: %w", fs.path, err)
		}
	}
	return n, nil
}

// readLong handles a line longer than the read buffer.
func (s *reader[T]) readLong(buf []T, n *int, first []byte) error {
	fs := &s.files[s.cur]
	long := append([]byte(nil), first...)
	for {
		more, err := s.br.ReadSlice('\n')
		long = append(long, more...)
		if len(long) > MaxLineBytes {
			return fmt.Errorf("file: %s:%d: line longer than %d bytes", fs.path, fs.line, MaxLineBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("file: cannot read %s: %w", fs.path, err)
		}
		if derr := s.decode(long, &buf[*n]); derr != nil {
			return derr
		}
		if !isBlank(long) {
			*n++
		}
		fs.offset += int64(len(long))
		fs.line++
		return nil
	}
}

func (s *reader[T]) decode(line []byte, v *T) error {
	if isBlank(line) {
		return nil
	}
	if err := s.opts.Decode(trimEOL(line), v); err != nil {
		fs := &s.files[s.cur]
		return fmt.Errorf("file: %s:%d: %w", fs.path, fs.line, err)
	}
	return nil
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

func (s *reader[T]) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}
