package fleet

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/bpfattest/bpfattest/ear"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/verifier"
)

// EAR signing. With Config.EARKey, every verdict the service records gets
// a signed EAT Attestation Result (package ear, docs/ear.md), made and
// signed when the verdict is recorded and stored beside it: its iat is
// the verdict's time, its appraisal policy id the SHA-256 of the exact
// policy version the agent was judged by, its submod nonce the nonce the
// verified quote answers. docs/fleet.md says why the token is signed then
// and not when asked for.

// EARMediaType is the media type of a served EAR: RFC 9782's
// application/eat+jwt with the profile of draft-ietf-rats-ear-03 as its
// eat_profile parameter (the draft's §5).
const EARMediaType = `application/eat+jwt; eat_profile="` + ear.Profile + `"`

// MaxEARSize bounds a token the service stores, serves and puts in a
// webhook payload. A verdict whose token with the verdict extension would
// be larger (a host with thousands of programs) gets a token without the
// extension, which says the same status and trustworthiness vector; one
// still larger is not signed (ear_errors_total counts it).
const MaxEARSize = 1 << 20

// ErrNoEAR is wrapped by LatestEAR's errors when an agent has no EAR to
// serve (the API answers NOT_FOUND, 404).
var ErrNoEAR = errors.New("no EAR")

// earSigner signs the EARs of one service node.
type earSigner struct {
	key         crypto.Signer
	alg         ear.Algorithm
	kid         string
	validity    time.Duration
	omitVerdict bool
}

// newEARSigner checks the EAR options of cfg and returns their signer
// (nil without a key). A key that cannot sign a token that then verifies
// with its own public key is refused here, at start, not at the first
// verdict.
func newEARSigner(cfg *Config) (*earSigner, error) {
	if cfg.EARKey == nil {
		if cfg.EARAlgorithm != "" || cfg.EARValidity != 0 || cfg.EAROmitVerdict {
			return nil, errors.New("fleet: EAR options without an EAR key")
		}
		return nil, nil
	}
	if cfg.EARValidity < 0 {
		return nil, fmt.Errorf("fleet: EAR validity %v is negative", cfg.EARValidity)
	}
	pub := cfg.EARKey.Public()
	alg := cfg.EARAlgorithm
	if alg == "" {
		var err error
		if alg, err = ear.DefaultAlgorithm(pub); err != nil {
			return nil, fmt.Errorf("fleet: EAR key: %w", err)
		}
	}
	kid, err := ear.KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("fleet: EAR key: %w", err)
	}
	e := &earSigner{key: cfg.EARKey, alg: alg, kid: kid, validity: cfg.EARValidity, omitVerdict: cfg.EAROmitVerdict}
	probe := &verifier.Verdict{Host: "probe", Status: verifier.StatusUnreachable, Reason: "a test of the EAR key at start"}
	now := time.Now()
	tok, err := e.sign(probe, now, ear.PolicyID(nil))
	if err != nil {
		return nil, fmt.Errorf("fleet: EAR key: %w", err)
	}
	if _, err := ear.Verify(tok, pub, ear.VerifyOptions{Now: func() time.Time { return now }}); err != nil {
		return nil, fmt.Errorf("fleet: EAR key: a token it signed does not verify with its public key: %w", err)
	}
	return e, nil
}

// sign returns the EAR of a verdict recorded at at and judged by the
// policy named policyID ("" when no policy was used), at most MaxEARSize
// bytes: without the verdict extension when it would be larger with it.
func (e *earSigner) sign(v *verifier.Verdict, at time.Time, policyID string) (string, error) {
	tok, err := e.signWith(v, at, policyID, e.omitVerdict)
	if err == nil && len(tok) > MaxEARSize && !e.omitVerdict {
		tok, err = e.signWith(v, at, policyID, true)
	}
	if err != nil {
		return "", err
	}
	if len(tok) > MaxEARSize {
		return "", fmt.Errorf("EAR of %d bytes, more than %d even without the verdict", len(tok), MaxEARSize)
	}
	return tok, nil
}

func (e *earSigner) signWith(v *verifier.Verdict, at time.Time, policyID string, omitVerdict bool) (string, error) {
	opts := ear.Options{Now: func() time.Time { return at }, Validity: e.validity, OmitVerdict: omitVerdict}
	if policyID != "" {
		opts.PolicyIDs = []string{policyID}
	}
	c, err := ear.FromVerdict(v, opts)
	if err != nil {
		return "", err
	}
	return ear.Sign(c, e.key, e.alg)
}

// EARKeyID returns the kid of the EARs this node signs (the RFC 7638
// thumbprint of its public key), "" when it signs none.
func (s *Service) EARKeyID() string {
	if s.ear == nil {
		return ""
	}
	return s.ear.kid
}

// EARKeySet returns the JWK Set (ear.MarshalKeySet) of the public key this
// node signs EARs with; an error wrapping ErrNoEAR when it signs none.
// Replicas that sign with different keys each publish their own: a
// receiver collects the sets of every node, or the nodes share one key.
func (s *Service) EARKeySet() ([]byte, error) {
	if s.ear == nil {
		return nil, fmt.Errorf("fleet: %w: this node signs no EARs (no --ear-key)", ErrNoEAR)
	}
	return ear.MarshalKeySet(ear.PublicKey{Key: s.ear.key.Public(), Algorithm: s.ear.alg})
}

// EARAlgorithm returns the JWS algorithm of the EARs this node signs, ""
// when it signs none.
func (s *Service) EARAlgorithm() ear.Algorithm {
	if s.ear == nil {
		return ""
	}
	return s.ear.alg
}

// LatestEAR returns an agent's latest verdict with its EAR. It is an
// error wrapping store.ErrNotFound when the agent is not registered, and
// ErrNoEAR when its latest verdict has no EAR: the agent was not
// verified yet, no node signs EARs, or the node that recorded the verdict
// had no key or failed to sign. An EAR of an older verdict is never
// served in place of the latest verdict's.
func (s *Service) LatestEAR(ctx context.Context, name string) (*store.Verdict, error) {
	if _, err := s.st.Agent(ctx, name); err != nil {
		return nil, fmt.Errorf("fleet/ear: %w", err)
	}
	v, err := s.st.Verdict(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound) && s.ear == nil:
		return nil, fmt.Errorf("fleet/ear %s: %w: not verified yet, and this service signs no EARs (it has no EAR key: --ear-key)", name, ErrNoEAR)
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("fleet/ear %s: %w: not verified yet", name, ErrNoEAR)
	case err != nil:
		return nil, fmt.Errorf("fleet/ear: %w", err)
	case v.EAR != "":
		return v, nil
	case s.ear == nil:
		return nil, fmt.Errorf("fleet/ear %s: %w: this service signs no EARs (it has no EAR key: --ear-key)", name, ErrNoEAR)
	}
	return nil, fmt.Errorf("fleet/ear %s: %w: its latest verdict (%s, %s) was recorded without one, by a node without an EAR key or one that failed to sign (see its log)",
		name, ErrNoEAR, v.Status, v.At.UTC().Format(time.RFC3339))
}
