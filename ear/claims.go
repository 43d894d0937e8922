package ear

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/bpfattest/bpfattest/verifier"
)

// Profile is the EAT profile of the claims-set this package writes and
// reads: draft-ietf-rats-ear-03 (March 2026), the revision that renamed
// the claims with underscores (ear_status, ear_trustworthiness_vector, …).
// Tokens of the older dotted revisions (Veraison's
// "tag:github.com,2023:veraison/ear") are refused, not misread.
const Profile = "tag:ietf.org,2026:rats/ear#03"

// Draft names the specification revision Profile implements.
const Draft = "draft-ietf-rats-ear-03"

// SubmodLabel is the label of the one appraisal an EAR of this package
// carries: the host's, as one attester (its TPM quotes the agent's PCR and
// the boot PCRs together, under one attestation key and one nonce).
const SubmodLabel = "bpfattest"

// AppraisalProfile is the eat_profile of that appraisal: the mapping of
// docs/ear.md and the two extensions below. A change of the mapping that
// changes a value's meaning gets a new profile.
const AppraisalProfile = "https://github.com/bpfattest/bpfattest/ear/v1"

// The appraisal's extensions, named as the draft recommends for JWT
// (collision-resistant public claim names, RFC 7519 §4.2). Receivers that
// do not know them ignore them.
const (
	// VerdictClaim carries the verdict the appraisal was made from
	// (verifier.Verdict, as `bpfattest verify --json` prints it).
	VerdictClaim = "https://github.com/bpfattest/bpfattest/ear/verdict"
	// ReasonsClaim maps each claim of the vector to why it has its value.
	ReasonsClaim = "https://github.com/bpfattest/bpfattest/ear/reasons"
)

// Developer is the ear_verifier_id developer of this verifier.
const Developer = "https://github.com/bpfattest/bpfattest"

// Tier is an AR4SI trustworthiness tier, as the JSON serialisation spells
// it (draft-ietf-rats-ar4si §2.3.2).
type Tier string

// The tiers.
const (
	TierNone            Tier = "none"
	TierAffirming       Tier = "affirming"
	TierWarning         Tier = "warning"
	TierContraindicated Tier = "contraindicated"
)

// trust orders the tiers for the "no better than" rule: affirming above
// none (which asserts nothing), warning and contraindicated below both.
func (t Tier) trust() int {
	switch t {
	case TierAffirming:
		return 3
	case TierNone:
		return 2
	case TierWarning:
		return 1
	case TierContraindicated:
		return 0
	}
	return -1
}

// Valid reports whether t is one of the four tiers.
func (t Tier) Valid() bool { return t.trust() >= 0 }

// Value is the tier's CBOR encoding: 0, 2, 32 or 96.
func (t Tier) Value() int {
	switch t {
	case TierAffirming:
		return 2
	case TierWarning:
		return 32
	case TierContraindicated:
		return 96
	}
	return 0
}

// Claim is one AR4SI trustworthiness claim: a signed 8-bit value whose
// range gives its tier (draft-ietf-rats-ar4si §2.3.2: 0, 1 and -1 none;
// 2..31 and -2..-32 affirming; 32..95 and -33..-96 warning; 96..127 and
// -97..-128 contraindicated; negative values are non-standard).
type Claim int8

// The values this package assigns (docs/ear.md says when). The negative
// ones are this verifier's non-standard values, each in the tier its
// range gives.
const (
	NoClaim             Claim = 0  // no assertion
	VerifierMalfunction Claim = -1 // the verifier could not appraise (none)

	// instance-identity
	IdentityRecognized    Claim = 2   // AK enrolled through the EK or pinned by an operator
	IdentityFirstUse      Claim = -33 // AK recognized only as the one presented at first contact (warning)
	IdentityUntrustworthy Claim = 96  // the key lives in a software TPM simulator
	IdentityNotRecognized Claim = 97  // the quote is signed by another AK than the pinned one

	// configuration
	ConfigApproved      Claim = 2  // verified boot chain, the policy's boot rules hold
	ConfigVulnerable    Claim = 32 // Secure Boot off, or DMA protection disabled
	ConfigUnavailable   Claim = 36 // Secure Boot state could not be read from the log
	ConfigUnsupportable Claim = 96 // a boot rule of the policy is broken

	// executables
	ExecBootApproved    Claim = 3  // BPF programs approved, and the boot's executables pinned
	ExecBPFApproved     Claim = -2 // BPF programs approved; the boot's executables not appraised
	ExecUnrecognized    Claim = 33 // a program no trusted signature or policy entry recognizes
	ExecContraindicated Claim = 96 // a program rule of the policy is broken

	// hardware
	HardwareGenuine     Claim = 2  // the EK certificate chains to a root the verifier trusts
	HardwareSoftwareTPM Claim = 96 // the agent says its TPM is software (simulator, swtpm)

	// every claim
	CryptoFailed Claim = 99 // the evidence failed a cryptographic check
)

// Tier returns the claim's tier.
func (c Claim) Tier() Tier {
	switch {
	case c >= 96 || c <= -97:
		return TierContraindicated
	case c >= 32 || c <= -33:
		return TierWarning
	case c >= 2 || c <= -2:
		return TierAffirming
	}
	return TierNone
}

// The claim names (draft-ietf-rats-ar4si §3.1, JSON member names).
const (
	InstanceIdentity = "instance-identity"
	Configuration    = "configuration"
	Executables      = "executables"
	FileSystem       = "file-system"
	Hardware         = "hardware"
	RuntimeOpaque    = "runtime-opaque"
	StorageOpaque    = "storage-opaque"
	SourcedData      = "sourced-data"
)

// Vector is an AR4SI trustworthiness vector. The four claims this verifier
// appraises are always written, 0 when it makes no claim (AR4SI treats 0
// as absent), so a vector is never empty and says what was looked at; the
// four it never claims (file-system, runtime-opaque, storage-opaque,
// sourced-data: nothing in a TPM quote of BPF loads and the boot proves
// them) are written only when set, which Appraise never does. Reading
// accepts any subset.
type Vector struct {
	InstanceIdentity Claim `json:"instance-identity"`
	Configuration    Claim `json:"configuration"`
	Executables      Claim `json:"executables"`
	FileSystem       Claim `json:"file-system,omitempty"`
	Hardware         Claim `json:"hardware"`
	RuntimeOpaque    Claim `json:"runtime-opaque,omitempty"`
	StorageOpaque    Claim `json:"storage-opaque,omitempty"`
	SourcedData      Claim `json:"sourced-data,omitempty"`
}

// Claims returns the vector's claims by name, in the draft's order.
func (v *Vector) Claims() []NamedClaim {
	return []NamedClaim{
		{InstanceIdentity, v.InstanceIdentity}, {Configuration, v.Configuration}, {Executables, v.Executables},
		{FileSystem, v.FileSystem}, {Hardware, v.Hardware}, {RuntimeOpaque, v.RuntimeOpaque},
		{StorageOpaque, v.StorageOpaque}, {SourcedData, v.SourcedData},
	}
}

// NamedClaim is one claim of a vector with its name.
type NamedClaim struct {
	Name  string
	Value Claim
}

// Worst returns the tier of the vector's least trustworthy claim, none
// when every claim is none.
func (v *Vector) Worst() Tier {
	t := TierNone
	for _, c := range v.Claims() {
		if ct := c.Value.Tier(); ct != TierNone && (t == TierNone || ct.trust() < t.trust()) {
			t = ct
		}
	}
	return t
}

// VerifierID is ear_verifier_id (draft-ietf-rats-ar4si §4.3).
type VerifierID struct {
	Build     string `json:"build"`
	Developer string `json:"developer"`
}

// Nonce is eat_nonce: 8 to 64 bytes, base64url without padding in JSON
// (as JOSE encodes binary data; standard base64 is accepted on reading).
type Nonce []byte

// MarshalText encodes the nonce.
func (n Nonce) MarshalText() ([]byte, error) {
	return []byte(base64.RawURLEncoding.EncodeToString(n)), nil
}

// UnmarshalText decodes a nonce.
func (n *Nonce) UnmarshalText(b []byte) error {
	s := string(b)
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if d, err := enc.DecodeString(s); err == nil {
			*n = d
			return nil
		}
	}
	return errors.New("eat_nonce is not base64")
}

// Appraisal is one EAR-appraisal (draft-ietf-rats-ear-03 §3.1), with this
// verifier's two extensions.
type Appraisal struct {
	Profile   string   `json:"eat_profile,omitempty"`
	Status    Tier     `json:"ear_status"`
	Vector    *Vector  `json:"ear_trustworthiness_vector,omitempty"`
	PolicyIDs []string `json:"ear_appraisal_policy_ids,omitempty"`
	// Nonce is the evidence's nonce: the verifier's nonce the verified
	// quote answers.
	Nonce   Nonce             `json:"eat_nonce,omitempty"`
	Reasons map[string]string `json:"https://github.com/bpfattest/bpfattest/ear/reasons,omitempty"`
	Verdict *verifier.Verdict `json:"https://github.com/bpfattest/bpfattest/ear/verdict,omitempty"`
}

// Claims is an EAR claims-set (draft-ietf-rats-ear-03 §3), as a JWT's
// payload.
type Claims struct {
	Profile  string `json:"eat_profile"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp,omitempty"`
	// Subject is the host's name, as the verifier calls it (JWT "sub").
	Subject    string     `json:"sub,omitempty"`
	VerifierID VerifierID `json:"ear_verifier_id"`
	// Status is the overall status: no better than the worst submod's.
	Status *Tier `json:"ear_status,omitempty"`
	// Nonce is a relying party's nonce echoed for the result's freshness
	// (not the evidence's, which is in the submod).
	Nonce   Nonce                 `json:"eat_nonce,omitempty"`
	Submods map[string]*Appraisal `json:"submods"`
}

// Nonce sizes (draft-ietf-rats-ear-03 §3, RFC 9711 §4.1).
const (
	MinNonceSize = 8
	MaxNonceSize = 64
)

// ErrClaims is wrapped by every error about a claims-set that does not
// conform to the profile.
var ErrClaims = errors.New("claims do not conform to " + Draft)

// Validate checks the claims-set against the profile: the profile string,
// a positive iat, exp after iat when set, the verifier id, at least one
// submod, every status a tier no better than its vector's worst claim and
// the overall status no better than the worst submod's, policy id lists
// not empty, nonces of legal size. Unknown claims were ignored on reading.
func (c *Claims) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrClaims, fmt.Sprintf(format, args...))
	}
	switch {
	case c == nil:
		return bad("no claims")
	case c.Profile != Profile:
		return bad("eat_profile %q, want %q", c.Profile, Profile)
	case c.IssuedAt <= 0:
		return bad("iat %d", c.IssuedAt)
	case c.Expires != 0 && c.Expires <= c.IssuedAt:
		return bad("exp %d is not after iat %d", c.Expires, c.IssuedAt)
	case strings.TrimSpace(c.VerifierID.Build) == "" || strings.TrimSpace(c.VerifierID.Developer) == "":
		return bad("ear_verifier_id needs build and developer")
	case len(c.Submods) == 0:
		return bad("no submods")
	}
	if err := checkNonce(c.Nonce); err != nil {
		return bad("eat_nonce: %v", err)
	}
	worst := TierAffirming
	first := true
	for label, a := range c.Submods {
		if a == nil {
			return bad("submod %q is null", label)
		}
		if err := a.validate(); err != nil {
			return bad("submod %q: %v", label, err)
		}
		if first || a.Status.trust() < worst.trust() {
			worst, first = a.Status, false
		}
	}
	if c.Status != nil {
		if !c.Status.Valid() {
			return bad("ear_status %q is not a tier", *c.Status)
		}
		if c.Status.trust() > worst.trust() {
			return bad("ear_status %s is better than the worst submod's (%s)", *c.Status, worst)
		}
	}
	return nil
}

func (a *Appraisal) validate() error {
	if !a.Status.Valid() {
		return fmt.Errorf("ear_status %q is not a tier", a.Status)
	}
	if a.Vector != nil {
		if w := a.Vector.Worst(); a.Status.trust() > w.trust() {
			return fmt.Errorf("ear_status %s is better than the vector's worst claim (%s)", a.Status, w)
		}
	}
	if a.PolicyIDs != nil && len(a.PolicyIDs) == 0 {
		return errors.New("ear_appraisal_policy_ids is empty")
	}
	for _, id := range a.PolicyIDs {
		if strings.TrimSpace(id) == "" {
			return errors.New("an empty appraisal policy id")
		}
	}
	return checkNonce(a.Nonce)
}

func checkNonce(n Nonce) error {
	if n != nil && (len(n) < MinNonceSize || len(n) > MaxNonceSize) {
		return fmt.Errorf("%d bytes, want %d to %d", len(n), MinNonceSize, MaxNonceSize)
	}
	return nil
}
