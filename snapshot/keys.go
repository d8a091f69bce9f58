package snapshot

import (
	"encoding/binary"
)

// Key layout (all integers big endian, so keys sort numerically):
//
//	m <job> 0x00 <checkpoint id: 8>                                   metadata
//	b <job> 0x00 <writer id: 8> <len(scope): 2> <scope> <kg: 4> <seq: 4>   block
//
// Job names are [a-z0-9-]+ and never contain 0x00, so "<job> 0x00" is a
// prefix of exactly one job's keys ("counts" cannot capture "counts2").
// Scopes may hold any bytes; the length prefix keeps them unambiguous. The
// layout gives every unit retention deletes a contiguous key range: a whole
// writer checkpoint (b <job> 0x00 <writer>), or one key group of one scope of
// one writer (… <scope> <kg>), and the metadata of all checkpoints below an
// id (m <job> 0x00 [0, id)).
const (
	metaTag  byte = 'm'
	blockTag byte = 'b'
	jobEnd   byte = 0x00 // terminates the job name
)

// checkJobName enforces the job-name alphabet the key layout relies on.
func checkJobName(job string) error {
	if job == "" || len(job) > MaxJobNameBytes {
		return invalidf("job name %q must have 1 to %d characters", job, MaxJobNameBytes)
	}
	for i := 0; i < len(job); i++ {
		c := job[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return invalidf("job name %q may only contain a-z, 0-9 and '-'", job)
		}
	}
	return nil
}

func checkScope(scope string) error {
	if len(scope) > MaxScopeBytes {
		return invalidf("scope of %d bytes exceeds the limit of %d", len(scope), MaxScopeBytes)
	}
	return nil
}

// jobPrefix returns tag <job> 0x00.
func jobPrefix(dst []byte, tag byte, job string) []byte {
	dst = append(dst, tag)
	dst = append(dst, job...)
	return append(dst, jobEnd)
}

// jobPrefixEnd returns the smallest key after every key with jobPrefix.
func jobPrefixEnd(dst []byte, tag byte, job string) []byte {
	dst = append(dst, tag)
	dst = append(dst, job...)
	return append(dst, jobEnd+1)
}

func metaKey(dst []byte, job string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(jobPrefix(dst, metaTag, job), id)
}

func writerPrefix(dst []byte, job string, writer uint64) []byte {
	return binary.BigEndian.AppendUint64(jobPrefix(dst, blockTag, job), writer)
}

// writerPrefixEnd is the end of writer's range (writer+1 does not overflow:
// ids are below 1<<63, see Store.CommitCheckpoint).
func writerPrefixEnd(dst []byte, job string, writer uint64) []byte {
	return writerPrefix(dst, job, writer+1)
}

func scopePrefix(dst []byte, job string, writer uint64, scope string) []byte {
	dst = writerPrefix(dst, job, writer)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(scope)))
	return append(dst, scope...)
}

func kgPrefix(dst []byte, job string, writer uint64, scope string, kg int) []byte {
	return binary.BigEndian.AppendUint32(scopePrefix(dst, job, writer, scope), uint32(kg))
}

// kgPrefixEnd is the end of one key group's range: the next key group's
// prefix, or for the last possible key group the scope's successor.
func kgPrefixEnd(dst []byte, job string, writer uint64, scope string, kg int) []byte {
	if uint64(kg)+1 <= 0xFFFFFFFF {
		return kgPrefix(dst, job, writer, scope, kg+1)
	}
	dst = scopePrefix(dst, job, writer, scope)
	return prefixSuccessor(dst)
}

func blockKey(dst []byte, job string, writer uint64, scope string, kg, seq int) []byte {
	return binary.BigEndian.AppendUint32(kgPrefix(dst, job, writer, scope, kg), uint32(seq))
}

// prefixSuccessor turns p into the smallest key greater than every key with
// prefix p (p must not be all 0xFF).
func prefixSuccessor(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xFF {
			p[i]++
			return p[:i+1]
		}
	}
	panic("snapshot: invariant violated: prefix of only 0xFF bytes")
}

// parsedBlockKey is a block key taken apart.
type parsedBlockKey struct {
	writer uint64
	scope  []byte
	kg     int
	seq    int
}

// parseBlockKey parses a key that starts with jobPrefix(blockTag, job) of
// length prefixLen. ok is false for a key that does not follow the layout.
func parseBlockKey(key []byte, prefixLen int) (k parsedBlockKey, ok bool) {
	rest := key[prefixLen:]
	if len(rest) < 8+2 {
		return k, false
	}
	k.writer = binary.BigEndian.Uint64(rest)
	scopeLen := int(binary.BigEndian.Uint16(rest[8:]))
	rest = rest[10:]
	if len(rest) != scopeLen+8 {
		return k, false
	}
	k.scope = rest[:scopeLen]
	k.kg = int(binary.BigEndian.Uint32(rest[scopeLen:]))
	k.seq = int(binary.BigEndian.Uint32(rest[scopeLen+4:]))
	return k, true
}
