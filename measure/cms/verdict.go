package cms

import "fmt"

// Verdict is the outcome of a signature check in the vocabulary of the
// Hornet LSM and IPE. The numeric values are those of the kernel enum
// lsm_integrity_verdict and are part of the measurement: never renumber.
type Verdict uint8

// Verdicts, numbered as lsm_integrity_verdict.
const (
	VerdictNone       Verdict = 0 // no check was made
	VerdictOK         Verdict = 1 // signature good, signer trusted (and, for Hornet, every map hash matched)
	VerdictUnsigned   Verdict = 2 // no signature at all
	VerdictPartialSig Verdict = 3 // signature good, but no map-hash attribute (Hornet only)
	VerdictUnknownKey Verdict = 4 // signer not in the trust store
	VerdictUnexpected Verdict = 5 // a signed map hash does not match the map (Hornet only)
	VerdictFault      Verdict = 6 // the signature cannot be parsed or uses something unsupported
	VerdictBadSig     Verdict = 7 // signature, digest or a signed rule does not hold
)

var verdictNames = [...]string{
	VerdictNone:       "NONE",
	VerdictOK:         "OK",
	VerdictUnsigned:   "UNSIGNED",
	VerdictPartialSig: "PARTIALSIG",
	VerdictUnknownKey: "UNKNOWNKEY",
	VerdictUnexpected: "UNEXPECTED",
	VerdictFault:      "FAULT",
	VerdictBadSig:     "BADSIG",
}

// String returns the upper-case name used by Hornet and IPE policies.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// MarshalText encodes the verdict as its name. Unknown values are an error
// so that a corrupted verdict never turns into a plausible word.
func (v Verdict) MarshalText() ([]byte, error) {
	if int(v) >= len(verdictNames) {
		return nil, fmt.Errorf("verdict/marshal: %w: %d", ErrUnknownVerdict, uint8(v))
	}
	return []byte(verdictNames[v]), nil
}

// UnmarshalText decodes a verdict name as written by MarshalText.
func (v *Verdict) UnmarshalText(b []byte) error {
	for i, n := range verdictNames {
		if n == string(b) {
			*v = Verdict(i)
			return nil
		}
	}
	return fmt.Errorf("verdict/unmarshal: %w: %q", ErrUnknownVerdict, b)
}
