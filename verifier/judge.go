package verifier

import (
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Judge verifies evidence that an agent sent on its own (push mode: it
// dialled the verifier, was given nonce and a record to start from, and
// uploaded m) against h and evaluates pol, exactly as Check judges the
// answer to its own quote request. h without an AK pins the evidence's AK
// (trust on first use: the caller decides whether that is allowed).
//
// It returns the verdict in every case; when the evidence verified, also
// the Host to store (h with the new State) and a nil error, otherwise the
// verification error as well (for example attest.MissingBootHeader: the
// agent rebooted and must answer again from record 0). Host and Agent in
// the verdict are the caller's to fill. The challenge should have asked
// for the firmware event log as WantsFirmwareLog says.
func Judge(m *pb.Evidence, nonce []byte, h *Host, pol *attest.Policy) (*Verdict, *Host, error) {
	v := &Verdict{AKPinned: h.Pinned, TPM: h.TPM}
	if len(h.AKPublic) == 0 {
		h = &Host{Version: HostVersion, AKPublic: m.GetAkPublic(), Pinned: PinTOFU}
		v.AKPinned = PinTOFU
	}
	ev, err := evidence.FromProto(m)
	var res *attest.Result
	if err == nil {
		res, err = verify(ev, nonce, h.AKPublic, h.State)
	}
	if err != nil {
		return v.unverified(err), nil, err
	}
	v.fill(res, pol)
	v.Nonce = nonce
	next := *h
	next.State = res.State()
	return v, &next, nil
}
