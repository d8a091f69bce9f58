//go:build !invariants

package ringbuf

// invariants enables the expensive consistency checks (index arithmetic,
// reservation and read bounds against the other side's index). Build with
// -tags invariants to turn them on; they cost nothing otherwise.
const invariants = false
