package job

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinel errors. Spec problems are reported as *Errors (which wraps
// ErrInvalidSpec); record problems as errors wrapping ErrBadRecord; runtime
// evaluation problems as a panic carrying *EvalError.
var (
	// ErrInvalidSpec is wrapped by every *Errors value.
	ErrInvalidSpec = errors.New("job: invalid job spec")
	// ErrBadRecord is wrapped by every error DecodeJSON returns.
	ErrBadRecord = errors.New("job: bad record")
	// ErrDivideByZero is the cause of the *EvalError raised by integer `%`
	// with a zero divisor (expr's VM reports "integer divide by zero" too).
	ErrDivideByZero = errors.New("job: integer divide by zero")
)

// Error is one problem in a job spec, at a position in its file.
// Line and Column are 1-based; 0 means the position is unknown (a Spec built
// in code rather than parsed).
type Error struct {
	File         string
	Line, Column int
	// Path names the field, e.g. "pipeline[1].map.double"; empty for
	// problems with the document as a whole.
	Path string
	Msg  string
}

// Error formats the problem as "file:line:col: path: msg".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d:%d", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a job spec, sorted by position. Parse,
// Compile and Load return it (as error) whenever they fail.
type Errors struct {
	List []*Error
}

// Error prints one problem per line.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, x := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(x.Error())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidSpec) true and exposes each *Error.
func (e *Errors) Unwrap() []error {
	out := make([]error, 0, len(e.List)+1)
	out = append(out, ErrInvalidSpec)
	for _, x := range e.List {
		out = append(out, x)
	}
	return out
}

// sortErrors orders problems by position, then path, then message, and drops
// exact duplicates.
func sortErrors(list []*Error) []*Error {
	slices.SortStableFunc(list, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
	return slices.CompactFunc(list, func(a, b *Error) bool { return *a == *b })
}

// asErrors returns nil for an empty list, so callers can `return p, asErrors(l)`.
func asErrors(list []*Error) error {
	if len(list) == 0 {
		return nil
	}
	return &Errors{List: sortErrors(list)}
}

// EvalError is what a compiled Filter or Map panics with when an expression
// fails at run time (today: integer `%` by zero, or an error from expr's VM
// on the slow path). The engine recovers it and fails the job, naming the
// operator. It is not a bug in streamd, so it is an error value, not a string.
type EvalError struct {
	Step string // the step's name
	Line int    // the step's line in the spec, 0 if unknown
	Expr string // the expression's source text
	Err  error
}

func (e *EvalError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("job: step %q (line %d): cannot evaluate %q: %v", e.Step, e.Line, e.Expr, e.Err)
	}
	return fmt.Sprintf("job: step %q: cannot evaluate %q: %v", e.Step, e.Expr, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }
