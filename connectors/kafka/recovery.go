package kafka

import (
	"fmt"
	"slices"
)

// endOutcome is how the broker answered the recovery's EndTxn(commit) of
// a transaction the restored checkpoint lists.
type endOutcome int

const (
	// endOK: the transaction is committed (now, or it already was and
	// this was a retried commit).
	endOK endOutcome = iota
	// endFenced: a later epoch of the producer exists (fenced, invalid
	// epoch, invalid state, unknown producer id mapping): the
	// transaction was ended before, by a commit or an abort. Only the
	// control topic can tell which.
	endFenced
)

// verdict is what recovery concludes about one listed transaction.
type verdict int

const (
	verdictCommitted    verdict = iota // committed now
	verdictWasCommitted                // committed before (control record proves it)
)

// recoverDecision decides the fate of a pending transaction p of txnID
// that the restored checkpoint lists, given the broker's answer to
// EndTxn(commit) at its producer id and epoch and the highest checkpoint a
// committed control record of txnID names (0: none). It is an error, which
// stops the job, when the transaction was aborted: its output is lost and
// running on would leave a hole.
func recoverDecision(txnID string, p pendingTxn, out endOutcome, controlThrough uint64) (verdict, error) {
	switch out {
	case endOK:
		return verdictCommitted, nil
	case endFenced:
		if controlThrough >= p.Checkpoint {
			return verdictWasCommitted, nil
		}
		return 0, fmt.Errorf("kafka: the transaction of checkpoint %d of %q (producer id %d, epoch %d) was aborted by the broker, "+
			"probably because its transaction timeout expired while the job was down; its output is lost. "+
			"Raise the transaction timeout (the broker's transaction.max.timeout.ms too) and restart the job from an earlier savepoint, "+
			"or accept the loss by moving the data dir away", p.Checkpoint, txnID, p.ProducerID, p.Epoch)
	}
	panic(fmt.Sprintf("kafka: recoverDecision: unknown outcome %d", out))
}

// recoveryPlan is what Recover does, in order: commit every listed
// transaction, then fence every transactional id of the restored tasks
// (aborting what the crashed run left open).
type recoveryPlan struct {
	Commit map[string]pendingTxn // by transactional id
	Fence  []string              // sorted
}

// planRecovery turns the restored tasks' states into the plan. Two tasks
// naming one transactional id is corruption (two writers cannot have
// shared one): an error.
func planRecovery(states []sinkState) (recoveryPlan, error) {
	plan := recoveryPlan{Commit: make(map[string]pendingTxn)}
	seen := make(map[string]bool)
	for _, st := range states {
		if seen[st.TxnID] {
			return recoveryPlan{}, fmt.Errorf("%w: two tasks of the checkpoint name the transactional id %q", ErrBadState, st.TxnID)
		}
		seen[st.TxnID] = true
		plan.Fence = append(plan.Fence, st.TxnID)
		if st.Pending != nil {
			plan.Commit[st.TxnID] = *st.Pending
		}
	}
	slices.Sort(plan.Fence)
	return plan, nil
}
