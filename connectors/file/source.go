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

// NewSource returns a bounded source factory for engine.FromSource. The
// files are split over the tasks: task j of p reads files j, j+p, …. Its
// position is (file number, byte offset, line number).
func NewSource[T any](opts SourceOptions[T]) func(engine.SourceContext) (engine.Source[T], error) {
	return func(ctx engine.SourceContext) (engine.Source[T], error) {
		if opts.Decode == nil {
			return nil, errors.New("file: source needs a Decode function")
		}
		all, err := Files(opts.Path)
		if err != nil {
			return nil, err
		}
		var mine []string
		for i := ctx.Index; i < len(all); i += ctx.Parallelism {
			mine = append(mine, all[i])
		}
		return &source[T]{opts: opts, files: mine}, nil
	}
}

type source[T any] struct {
	opts   SourceOptions[T]
	files  []string
	fileNo int   // index into files
	offset int64 // byte offset of the next line in files[fileNo]
	line   int64 // number of the next line (1-based)
	f      *os.File
	br     *bufio.Reader
}

func (s *source[T]) Open(_ engine.SourceContext, state []byte) error {
	s.line = 1
	if state != nil {
		if len(state) != 24 {
			return fmt.Errorf("file: restored position has %d bytes, want 24", len(state))
		}
		s.fileNo = int(binary.BigEndian.Uint64(state))
		s.offset = int64(binary.BigEndian.Uint64(state[8:]))
		s.line = int64(binary.BigEndian.Uint64(state[16:]))
		if s.fileNo < 0 || s.fileNo > len(s.files) || s.offset < 0 || s.line < 1 {
			return fmt.Errorf("file: restored position (file %d, offset %d, line %d) does not fit the %d input files", s.fileNo, s.offset, s.line, len(s.files))
		}
	}
	return nil
}

func (s *source[T]) openFile() error {
	f, err := os.Open(s.files[s.fileNo])
	if err != nil {
		return fmt.Errorf("file: cannot open input: %w", err)
	}
	if s.offset > 0 {
		// Only a restored position starts inside a file; past the end, the
		// input changed since the checkpoint and records would be lost.
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("file: cannot stat %s: %w", s.files[s.fileNo], err)
		}
		if s.offset > st.Size() {
			f.Close()
			return fmt.Errorf("file: restored position (offset %d) is past the end of %s (%d bytes): the input changed since the checkpoint", s.offset, s.files[s.fileNo], st.Size())
		}
	}
	if _, err := f.Seek(s.offset, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("file: cannot seek %s to %d: %w", s.files[s.fileNo], s.offset, err)
	}
	s.f = f
	if s.br == nil {
		s.br = bufio.NewReaderSize(f, 256<<10)
	} else {
		s.br.Reset(f)
	}
	return nil
}

func (s *source[T]) Read(buf []T) (int, error) {
	n := 0
	for n < len(buf) {
		if s.fileNo >= len(s.files) {
			return n, io.EOF
		}
		if s.f == nil {
			if err := s.openFile(); err != nil {
				return n, err
			}
		}
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
			s.offset += int64(len(line))
			s.line++
		}
		if err == io.EOF {
			s.f.Close()
			s.f = nil
			s.fileNo++
			s.offset, s.line = 0, 1
			continue
		}
		if err != nil {
			return n, fmt.Errorf("file: cannot read %s: %w", s.files[s.fileNo], err)
		}
	}
	return n, nil
}

// readLong handles a line longer than the read buffer.
func (s *source[T]) readLong(buf []T, n *int, first []byte) error {
	long := append([]byte(nil), first...)
	for {
		more, err := s.br.ReadSlice('\n')
		long = append(long, more...)
		if len(long) > MaxLineBytes {
			return fmt.Errorf("file: %s:%d: line longer than %d bytes", s.files[s.fileNo], s.line, MaxLineBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("file: cannot read %s: %w", s.files[s.fileNo], err)
		}
		if derr := s.decode(long, &buf[*n]); derr != nil {
			return derr
		}
		if !isBlank(long) {
			*n++
		}
		s.offset += int64(len(long))
		s.line++
		return nil
	}
}

func (s *source[T]) decode(line []byte, v *T) error {
	if isBlank(line) {
		return nil
	}
	if err := s.opts.Decode(trimEOL(line), v); err != nil {
		return fmt.Errorf("file: %s:%d: %w", s.files[s.fileNo], s.line, err)
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

func (s *source[T]) Position() ([]byte, error) {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:], uint64(s.fileNo))
	binary.BigEndian.PutUint64(b[8:], uint64(s.offset))
	binary.BigEndian.PutUint64(b[16:], uint64(s.line))
	return b[:], nil
}

func (s *source[T]) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}
