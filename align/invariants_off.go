//go:build !invariants

package align

// invariants enables expensive self-checks after every state change; build
// with -tags invariants to turn them on.
const invariants = false

func (a *Aligner) checkInvariants() {}
