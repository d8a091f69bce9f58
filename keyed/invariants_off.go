//go:build !invariants

package keyed

// invariants enables expensive consistency checks (go test -tags invariants).
const invariants = false
