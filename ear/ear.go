package ear

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/bpfattest/bpfattest/verifier"
)

// Options complete the claims-set around a verdict's appraisal. The zero
// Options are usable: issued now, no expiry, this build's verifier id, no
// policy id, no relying party nonce, the verdict included.
type Options struct {
	// Now gives the issue time (iat); nil means time.Now.
	Now func() time.Time
	// Validity, when positive, sets exp to iat plus it (whole seconds). A
	// relying party must not accept the token after exp; without it, the
	// relying party decides how old a result it accepts.
	Validity time.Duration
	// VerifierID identifies this verifier; the zero value means
	// DefaultVerifierID().
	VerifierID VerifierID
	// PolicyIDs are the appraisal policies applied, in the order applied
	// (PolicyID of the policy file, then any the caller applied after it).
	PolicyIDs []string
	// Nonce is a relying party's nonce (8 to 64 bytes) echoed at the top
	// level for the result's freshness; nil for none.
	Nonce []byte
	// OmitVerdict leaves the verdict extension out: a smaller token that
	// says less about the host (its programs, signers, boot chain).
	OmitVerdict bool
}

// FromVerdict returns the EAR claims-set of one host's verdict: its
// appraisal (Appraise) as the one submod (SubmodLabel), the host's name as
// the subject, the overall status (the submod's), and the options' issue
// time, verifier id, policy ids and nonce. It fails on a nil verdict or
// options out of range; the result passes Validate.
func FromVerdict(v *verifier.Verdict, opts Options) (*Claims, error) {
	if v == nil {
		return nil, errors.New("ear: no verdict")
	}
	if err := checkNonce(opts.Nonce); err != nil {
		return nil, fmt.Errorf("ear: nonce: %w", err)
	}
	if opts.Validity < 0 {
		return nil, fmt.Errorf("ear: validity %v is negative", opts.Validity)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	a := Appraise(v)
	if len(opts.PolicyIDs) > 0 {
		a.PolicyIDs = slices.Clone(opts.PolicyIDs)
	}
	if opts.OmitVerdict {
		a.Verdict = nil
	}
	id := opts.VerifierID
	if id == (VerifierID{}) {
		id = DefaultVerifierID()
	}
	iat := now().Unix()
	c := &Claims{Profile: Profile, IssuedAt: iat, Subject: v.Host, VerifierID: id, Submods: map[string]*Appraisal{SubmodLabel: a}}
	status := a.Status
	c.Status = &status
	if opts.Validity > 0 {
		c.Expires = iat + int64(max(opts.Validity/time.Second, 1))
	}
	if opts.Nonce != nil {
		c.Nonce = Nonce(slices.Clone(opts.Nonce))
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("ear: %w", err)
	}
	return c, nil
}

// DefaultVerifierID is this build's verifier id: Developer, and "bpfattest"
// with the main module's version ("(devel)" for a build from a work tree).
func DefaultVerifierID() VerifierID {
	build := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		build = bi.Main.Version
	}
	return VerifierID{Developer: Developer, Build: "bpfattest " + build}
}

// PolicyID names a policy file by its SHA-256, as an RFC 6920 Named
// Information URI: "ni:///sha-256;" and the digest in base64url without
// padding. The same bytes always give the same id;
// `openssl dgst -sha256 -binary policy.yaml | basenc --base64url | tr -d =`
// recomputes it.
func PolicyID(policy []byte) string {
	d := sha256.Sum256(policy)
	return "ni:///sha-256;" + base64.RawURLEncoding.EncodeToString(d[:])
}
