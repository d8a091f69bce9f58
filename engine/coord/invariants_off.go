//go:build !invariants

package coord

// invariantsEnabled turns on the expensive self-checks after every Tick,
// Step, Ready and Advance (go test -tags invariants).
const invariantsEnabled = false
