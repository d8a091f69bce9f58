package ringbuf

import inv "github.com/streamd/streamd/internal/invariants"

// invariants enables the expensive consistency checks (index arithmetic,
// reservation and read bounds against the other side's index). It is
// internal/invariants' switch: on with -tags invariants or -race, and
// compiled away otherwise. That package, a leaf of constants, is the only
// streamd import ringbuf may have.
const invariants = inv.Enabled
