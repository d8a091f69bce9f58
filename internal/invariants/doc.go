// Package invariants is streamd's one switch for expensive self-checks.
//
// Enabled is a constant: true in a build with -tags invariants or with
// -race, false otherwise. Packages guard their structural checks (ring
// indexes, alignment state, keyed tables, snapshot blocks, the checkpoint
// coordinator) with
//
//	if invariants.Enabled { … }
//
// so that a release build compiles them away entirely, and every test run
// under the race detector (make race, CI) checks them as well as
// `make invariants` does. This is the shape of Pebble's internal/invariants.
//
// A package that must not import anything else of streamd's may import this
// one: it holds only constants, imports nothing and never will.
package invariants
