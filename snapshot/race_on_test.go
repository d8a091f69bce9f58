//go:build race

package snapshot

// raceEnabled: the race detector makes sync.Pool drop items on purpose, so
// allocation budgets cannot be checked.
const raceEnabled = true
