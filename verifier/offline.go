package verifier

import (
	"errors"
	"fmt"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// MaxEvidenceFileSize bounds an evidence file: the log slice dominates it
// (base64 in JSON), and a verifier joins at most maxFetchedLog of records.
const MaxEvidenceFileSize = 2 * maxFetchedLog

// ReadEvidence reads an evidence file written by `bpfattest quote --out`
// (the Evidence message in proto3 JSON).
func ReadEvidence(path string) (*evidence.Evidence, error) {
	b, err := boundedfile.ReadFile(path, MaxEvidenceFileSize)
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	ev, err := evidence.ParseJSON(b)
	if err != nil {
		return nil, fmt.Errorf("evidence %s: %w", path, err)
	}
	return ev, nil
}

// ErrOfflineState: saved evidence that starts after record 0 continues a
// State the auditor does not have.
var ErrOfflineState = errors.New("evidence does not start at record 0")

// CheckEvidence verifies evidence saved earlier (an audit: the quote was
// fresh for nonce when it was made, not now) against the AK h pins and
// evaluates pol, as Check does for a live quote. The evidence must carry
// the boot's log from record 0: h's State describes a later point of the
// agent's log and is not used. The verdict's Host and Agent are the
// caller's to fill; no state is returned, since nothing here is fresher
// than what h already holds.
func CheckEvidence(ev *evidence.Evidence, nonce []byte, h *Host, pol *attest.Policy) *Verdict {
	v := &Verdict{AKPinned: h.Pinned, TPM: h.TPM}
	switch {
	case len(h.AKPublic) == 0:
		v.Status, v.Reason = StatusUnverified, "no AK pinned: saved evidence carries its own AK, which proves nothing by itself"
		return v
	case ev.FromRecord != 0:
		v.Status, v.Reason = StatusUnverified, fmt.Sprintf("%v (from record %d): save it with `bpfattest quote --from 0`", ErrOfflineState, ev.FromRecord)
		return v
	}
	res, err := verify(ev, nonce, h.AKPublic, nil)
	if err != nil {
		return v.unverified(err)
	}
	v.fill(res, pol)
	v.Nonce = nonce
	return v
}
