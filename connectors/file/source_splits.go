package file

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/streamd/streamd/engine"
)

// SplitSource is the file source as a splittable source
// (engine.FromSplitSource), which a restore may rescale:
//
//	src := file.NewSplitSource(opts)
//	s := engine.FromSplitSource(j, "source", src, src.NewReader)
//
// Each input file is one split, its ID the file's path (as Files resolves
// SourceOptions.Path), its position "offset N line L" (the byte offset and
// number of the next line) or "done". The files are resolved once, on a
// fresh start: from then on the checkpoint's splits are the input, so a
// file added later is not read, and a file removed after it was read
// does not matter. A fresh start gives task j of p the files j, j+p, … of
// the sorted list (as NewSource); a restore at another parallelism deals
// the unfinished files out round robin in path order, then the finished
// ones. A file is never divided: with fewer files than tasks, some tasks
// are idle (as Flink's readers with fewer splits). A reader reads its
// files in path order.
type SplitSource[T any] struct {
	opts SourceOptions[T]
}

// NewSplitSource returns the splittable file source of opts.
func NewSplitSource[T any](opts SourceOptions[T]) *SplitSource[T] {
	return &SplitSource[T]{opts: opts}
}

const splitDone = "done"

func (fs fileSplit) split() engine.Split {
	if fs.done {
		return engine.Split{ID: fs.path, State: []byte(splitDone)}
	}
	return engine.Split{ID: fs.path, State: fmt.Appendf(nil, "offset %d line %d", fs.offset, fs.line)}
}

// parseSplit decodes a split the source wrote, strictly.
func parseSplit(sp engine.Split) (fileSplit, error) {
	fs := fileSplit{path: sp.ID}
	if sp.ID == "" {
		return fs, errors.New("file: a split has no path")
	}
	state := string(sp.State)
	if state == splitDone {
		fs.done = true
		return fs, nil
	}
	f := strings.Split(state, " ")
	if len(f) == 4 && f[0] == "offset" && f[2] == "line" {
		off, err1 := parseDecimal(f[1])
		line, err2 := parseDecimal(f[3])
		if err1 == nil && err2 == nil && line >= 1 {
			fs.offset, fs.line = off, line
			return fs, nil
		}
	}
	return fs, fmt.Errorf("file: split %s has the malformed position %q (want \"offset N line L\" with L >= 1, or \"done\")", sp.ID, state)
}

// parseDecimal parses a canonical non-negative decimal int64.
func parseDecimal(s string) (int64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("file: %q is not a canonical decimal", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

// Initial resolves the input files and gives task j of parallelism the
// files j, j+parallelism, ….
func (src *SplitSource[T]) Initial(parallelism int) ([][]engine.Split, error) {
	all, err := Files(src.opts.Path)
	if err != nil {
		return nil, err
	}
	asg := make([][]engine.Split, parallelism)
	for j := range asg {
		for _, f := range taskFiles(all, j, parallelism) {
			asg[j] = append(asg[j], fileSplit{path: f, line: 1}.split())
		}
		if asg[j] == nil {
			asg[j] = []engine.Split{}
		}
	}
	return asg, nil
}

// SplitsOfPosition converts the position of task index of parallelism
// of the plain source (NewSource) into its splits: the task's files,
// those before the position's file done. It resolves the files again,
// as the plain source does on a restore.
func (src *SplitSource[T]) SplitsOfPosition(index, parallelism int, position []byte) ([]engine.Split, error) {
	all, err := Files(src.opts.Path)
	if err != nil {
		return nil, err
	}
	var files []fileSplit
	for _, f := range taskFiles(all, index, parallelism) {
		files = append(files, fileSplit{path: f, line: 1})
	}
	fileNo, offset, line, err := decodePosition(position, len(files))
	if err != nil {
		return nil, err
	}
	setPosition(files, fileNo, offset, line)
	out := make([]engine.Split, len(files))
	for i, fs := range files {
		out[i] = fs.split()
	}
	return out, nil
}

// Reassign deals the files out to parallelism tasks: the unfinished ones
// round robin in path order, then the finished ones.
func (src *SplitSource[T]) Reassign(all []engine.Split, parallelism int) ([][]engine.Split, error) {
	files := make([]fileSplit, len(all))
	for i, sp := range all {
		fs, err := parseSplit(sp)
		if err != nil {
			return nil, err
		}
		files[i] = fs
	}
	slices.SortFunc(files, func(a, b fileSplit) int {
		if a.done != b.done {
			if a.done {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.path, b.path)
	})
	asg := make([][]engine.Split, parallelism)
	for i := range asg {
		asg[i] = []engine.Split{}
	}
	for i, fs := range files {
		asg[i%parallelism] = append(asg[i%parallelism], fs.split())
	}
	return asg, nil
}

// NewReader returns the reader of one task's files (for
// engine.FromSplitSource).
func (src *SplitSource[T]) NewReader(_ engine.SourceContext, splits []engine.Split) (engine.SplitReader[T], error) {
	if src.opts.Decode == nil {
		return nil, errors.New("file: source needs a Decode function")
	}
	r := &splitReader[T]{reader: reader[T]{opts: src.opts}}
	for _, sp := range splits {
		fs, err := parseSplit(sp)
		if err != nil {
			return nil, err
		}
		r.files = append(r.files, fs)
	}
	slices.SortFunc(r.files, func(a, b fileSplit) int { return cmp.Compare(a.path, b.path) })
	return r, nil
}

// splitReader is reader with the splits as its position.
type splitReader[T any] struct {
	reader[T]
}

func (r *splitReader[T]) Splits() ([]engine.Split, error) {
	out := make([]engine.Split, len(r.files))
	for i, fs := range r.files {
		out[i] = fs.split()
	}
	return out, nil
}
