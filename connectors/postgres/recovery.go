package postgres

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// txnRef names one transaction of a sink: the task that wrote it and the
// checkpoint it belongs to. With the sink's prefix it gives the gid.
type txnRef struct {
	Task       int    `json:"task"`
	Checkpoint uint64 `json:"checkpoint"`
}

// gidPrefix returns the run-independent prefix of the gids of job's sink:
// "sd" and 16 hex digits of a hash of both names (names may be long or hold
// any character; a gid is at most 200 bytes), then "_".
func gidPrefix(job, sink string) string {
	h := sha256.Sum256([]byte(job + "\x00" + sink))
	return "sd" + hex.EncodeToString(h[:8]) + "_"
}

// lockKey is the advisory lock key of a prefix.
func lockKey(prefix string) int64 {
	h := sha256.Sum256([]byte("lock\x00" + prefix))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// gid returns the gid of t: PREFIX tTASK_cCHECKPOINT.
func gid(prefix string, t txnRef) string {
	return prefix + "t" + strconv.Itoa(t.Task) + "_c" + strconv.FormatUint(t.Checkpoint, 10)
}

// parseGID parses a gid of prefix strictly.
func parseGID(prefix, g string) (txnRef, bool) {
	rest, ok := strings.CutPrefix(g, prefix+"t")
	if !ok {
		return txnRef{}, false
	}
	task, cp, ok := strings.Cut(rest, "_c")
	if !ok {
		return txnRef{}, false
	}
	ti, err1 := strconv.Atoi(task)
	ci, err2 := strconv.ParseUint(cp, 10, 64)
	if err1 != nil || err2 != nil || ti < 0 || ci == 0 {
		return txnRef{}, false
	}
	r := txnRef{Task: ti, Checkpoint: ci}
	if gid(prefix, r) != g { // leading zeros, signs
		return txnRef{}, false
	}
	return r, true
}

// sinkState is what a writer stores in a checkpoint: its transactions that
// are prepared and not yet committed.
type sinkState struct {
	Pending []txnRef `json:"pending"`
}

// maxPendingPerTask bounds a decoded state: a writer has at most one
// pending transaction per checkpoint in flight or aborted since its last
// commit.
const maxPendingPerTask = 1 << 16

func encodeState(pending []txnRef) ([]byte, error) {
	b, err := json.Marshal(sinkState{Pending: pending})
	if err != nil {
		return nil, fmt.Errorf("postgres: cannot encode sink state: %w", err)
	}
	return b, nil
}

// decodeState parses a writer's state strictly: checkpoint ids are
// positive and increasing, task indexes non-negative and equal.
func decodeState(b []byte) (sinkState, error) {
	var st sinkState
	if err := json.Unmarshal(b, &st); err != nil {
		return sinkState{}, fmt.Errorf("postgres: cannot decode sink state: %w", err)
	}
	if len(st.Pending) > maxPendingPerTask {
		return sinkState{}, fmt.Errorf("postgres: sink state lists %d pending transactions (at most %d)", len(st.Pending), maxPendingPerTask)
	}
	for i, t := range st.Pending {
		if t.Checkpoint == 0 || t.Task < 0 {
			return sinkState{}, fmt.Errorf("postgres: sink state lists an invalid transaction (task %d, checkpoint %d)", t.Task, t.Checkpoint)
		}
		if i > 0 && (t.Checkpoint <= st.Pending[i-1].Checkpoint || t.Task != st.Pending[0].Task) {
			return sinkState{}, fmt.Errorf("postgres: sink state lists its transactions out of order or from several tasks")
		}
	}
	return st, nil
}

// recoveryPlan says what Recover must do, in order: commit, then roll back.
type recoveryPlan struct {
	Commit   []string // gids, in checkpoint order
	Rollback []string
}

// planRecovery decides the fate of a sink's transactions after a restart.
// prepared lists the gids with the sink's prefix found in pg_prepared_xacts;
// pending the transactions the restored checkpoint lists (of every old
// task); committedThrough, per task, the highest checkpoint of its progress
// rows (the transactions that committed). A pending transaction that is
// prepared is committed; one that is not prepared must have committed
// (committedThrough at or above it: commits run in checkpoint order), or
// the output of a completed checkpoint is lost and recovery refuses. Every
// other prepared transaction is a stray of a crashed run and is rolled
// back. A gid with the prefix that does not parse is refused, not guessed
// at.
func planRecovery(prefix string, prepared []string, pending []txnRef, committedThrough map[int]uint64) (recoveryPlan, error) {
	var plan recoveryPlan
	want := make(map[txnRef]bool, len(pending))
	for _, t := range pending {
		want[t] = true
	}
	isPrepared := make(map[txnRef]bool, len(prepared))
	var commit []txnRef
	for _, g := range prepared {
		t, ok := parseGID(prefix, g)
		if !ok {
			return recoveryPlan{}, fmt.Errorf("postgres: prepared transaction %q has this sink's prefix but not its format: resolve it by hand (COMMIT PREPARED or ROLLBACK PREPARED)", g)
		}
		isPrepared[t] = true
		if want[t] {
			commit = append(commit, t)
		} else {
			plan.Rollback = append(plan.Rollback, g)
		}
	}
	for _, t := range pending {
		if !isPrepared[t] && committedThrough[t.Task] < t.Checkpoint {
			return recoveryPlan{}, fmt.Errorf("postgres: transaction %s (task %d, checkpoint %d) is listed as pending by the restored checkpoint, but it is neither prepared nor committed: the output of a completed checkpoint is lost (was it rolled back by hand?)",
				gid(prefix, t), t.Task, t.Checkpoint)
		}
	}
	slices.SortFunc(commit, func(a, b txnRef) int {
		if a.Checkpoint != b.Checkpoint {
			return cmpU(a.Checkpoint, b.Checkpoint)
		}
		return a.Task - b.Task
	})
	for _, t := range commit {
		plan.Commit = append(plan.Commit, gid(prefix, t))
	}
	slices.Sort(plan.Rollback)
	return plan, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
