//go:build !invariants && !race

package invariants

// Enabled is false: this build has neither -tags invariants nor -race, so
// the checks it guards cost nothing.
const Enabled = false
