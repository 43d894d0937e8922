package verifier

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Check verifies one agent through client: its identity first when h pins
// no AK yet (trust on first use), then a quote over a fresh nonce from the
// State's next record, attest.Verify against the pinned AK and the State,
// and attest.Evaluate of pol. It returns the verdict and, when the evidence
// verified, the Host to store (h with the new State). Every failure is a
// verdict (StatusUnverified or StatusUnreachable), never an error; Host
// and Agent in the verdict are the caller's to fill.
//
// An agent rebooted since the State answers from record 0 (the old record
// number is past its new log, or the log misses the new boot's header):
// asked again from 0 with the same State, Verify proves the reboot.
func Check(ctx context.Context, client pb.AttestationServiceClient, h *Host, pol *attest.Policy) (*Verdict, *Host) {
	v := &Verdict{AKPinned: h.Pinned, TPM: h.TPM}
	if len(h.AKPublic) == 0 {
		id, err := client.Identity(ctx, &pb.IdentityRequest{})
		if err != nil {
			return v.rpcFailed("identity", err), nil
		}
		h = &Host{Version: HostVersion, AKPublic: id.GetAkPublic(), Pinned: PinTOFU}
	}
	var from uint64
	if h.State != nil {
		from = h.State.NextRecord()
	}
	nonce := newNonce()
	res, err := quoteAndVerify(ctx, client, h.AKPublic, h.State, from, nonce)
	if from != 0 && newBoot(err) {
		nonce = newNonce()
		res, err = quoteAndVerify(ctx, client, h.AKPublic, h.State, 0, nonce)
	}
	if err != nil {
		var rpc *RPCError
		if errors.As(err, &rpc) {
			return v.rpcFailed("quote", rpc.Err), nil
		}
		return v.unverified(err), nil
	}
	v.fill(res, pol)
	v.Nonce = nonce
	next := *h
	next.State = res.State()
	return v, &next
}

// QuoteAndVerify asks the agent for one quote over a fresh nonce carrying
// the log from record from, and verifies it against the AK and the State
// (nil for a first verification), with the default boot PCRs
// (attest.DefaultBootPCRs). It asks for the firmware event log too when
// the boot chain may be unverified: at first contact, from record 0 (a new
// boot), or when the State has verified none; otherwise the State's chain
// of this boot stands while the boot PCRs keep their values. A failed call
// to the agent is an *RPCError; evidence that does not verify is
// attest.Verify's error.
func QuoteAndVerify(ctx context.Context, client pb.AttestationServiceClient, ak []byte, state *attest.State, from uint64) (*attest.Result, error) {
	return quoteAndVerify(ctx, client, ak, state, from, newNonce())
}

// NonceSize is the size of the nonces the verifier sends: 32 bytes.
const NonceSize = 32

// newNonce returns a fresh random nonce for one quote.
func newNonce() []byte {
	nonce := make([]byte, NonceSize)
	rand.Read(nonce)
	return nonce
}

// quoteAndVerify is QuoteAndVerify with the caller's nonce.
func quoteAndVerify(ctx context.Context, client pb.AttestationServiceClient, ak []byte, state *attest.State, from uint64, nonce []byte) (*attest.Result, error) {
	m, err := FetchEvidence(ctx, client, nonce, from, WantsFirmwareLog(state, from))
	if err != nil {
		return nil, &RPCError{err}
	}
	ev, err := evidence.FromProto(m)
	if err != nil {
		return nil, err
	}
	return verify(ev, nonce, ak, state)
}

// WantsFirmwareLog says whether evidence from record from, verified
// against state, must carry the machine's firmware event log: at first
// contact, from record 0 (a new boot), or when state has verified no boot
// chain; otherwise the state's chain of this boot stands while the boot
// PCRs keep their values. Pull (Check) and push challenges ask by it.
func WantsFirmwareLog(state *attest.State, from uint64) bool {
	return state == nil || from == 0 || !state.BootChainVerified()
}

// verify is the one verification of evidence every path of this package
// uses (a live quote, saved evidence, pushed evidence): the pinned AK, the
// nonce, the state, and the default boot PCRs.
func verify(ev *evidence.Evidence, nonce, ak []byte, state *attest.State) (*attest.Result, error) {
	return attest.Verify(ev, attest.VerifyOptions{Nonce: nonce, AKPublic: ak, State: state, BootPCRs: attest.DefaultBootPCRs()})
}

// unverified records in v why evidence did not verify: the reason, and
// the failed check's name when attest names one.
func (v *Verdict) unverified(err error) *Verdict {
	v.Status, v.Reason = StatusUnverified, err.Error()
	if ve, ok := errors.AsType[*attest.VerifyError](err); ok {
		v.Check = ve.Check.String()
	}
	if errors.Is(err, attest.ReplayMismatch) {
		// The agent answered with a log that does not replay to its PCR:
		// another writer extended the PCR, or the log was altered. Its
		// verdict cannot be trusted, and it is no outage.
		v.Reason = "log does not match PCR: " + err.Error()
	}
	return v
}

// RPCError marks a failed call to the agent, as opposed to evidence that
// does not verify.
type RPCError struct{ Err error }

func (e *RPCError) Error() string { return "quote: " + e.Err.Error() }
func (e *RPCError) Unwrap() error { return e.Err }

// newBoot reports whether a failed verification from the State's next
// record may be a reboot: the log does not start with the new boot's
// header (MissingBootHeader), or the agent's new log is shorter than the
// State's record number (INVALID_ARGUMENT from Quote).
func newBoot(err error) bool {
	var rpc *RPCError
	return errors.Is(err, attest.MissingBootHeader) || (errors.As(err, &rpc) && status.Code(rpc.Err) == codes.InvalidArgument)
}

// rpcFailed records a failed call: unreachable when the agent could not be
// reached in time, could-not-verify when it answered with an error.
func (v *Verdict) rpcFailed(call string, err error) *Verdict {
	st := status.Convert(err)
	v.Status = StatusUnverified
	if st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled {
		v.Status = StatusUnreachable
	}
	v.Reason = fmt.Sprintf("%s: %s: %s", call, st.Code(), st.Message())
	return v
}
