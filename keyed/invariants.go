package keyed

import inv "github.com/streamd/streamd/internal/invariants"

// invariants enables expensive consistency checks (every compacted key
// group is verified, shared pages and tables are checked before a write,
// the fused 8-byte path falls back to the checked one). It is
// internal/invariants' switch: on with -tags invariants or -race, and
// compiled away otherwise. That package, a leaf of constants, is the only
// streamd import keyed may have.
const invariants = inv.Enabled
