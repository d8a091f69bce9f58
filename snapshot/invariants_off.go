//go:build !invariants

package snapshot

// invariantsEnabled turns on expensive self-checks (every block written is
// decoded again, every handle is checked). Build with -tags invariants.
const invariantsEnabled = false
