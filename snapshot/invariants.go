package snapshot

import inv "github.com/streamd/streamd/internal/invariants"

// invariantsEnabled turns on expensive self-checks (every block written is
// decoded again, every handle is checked). It is internal/invariants'
// switch: on with -tags invariants or -race, and compiled away otherwise.
const invariantsEnabled = inv.Enabled
