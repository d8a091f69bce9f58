//go:build invariants || race

package invariants

// Enabled is true: this build has -tags invariants or -race.
const Enabled = true
