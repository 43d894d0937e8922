package cms

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
)

// Result is the outcome of Verify or VerifyHornet.
type Result struct {
	Verdict Verdict
	// Signer is the certificate whose key verified the signature: the
	// trusted certificate, or the embedded one that chains to it.
	Signer *x509.Certificate
	// SignerID names the first signer: "skid:<hex>" or
	// "issuer+serial:<serial hex>/<issuer hex>".
	SignerID string
	// DigestAlgorithm is the kernel's name of the signer's digest
	// ("sha256").
	DigestAlgorithm string
	SignedAttrs     bool
	// MapHashes are Hornet's signed map hashes (VerifyHornet only).
	MapHashes []MapHash
	// Errno is the errno a verifying 6.18 kernel would return for this
	// signature ("" when it would accept it), for the record.
	Errno string
	// Reason says why the verdict is not OK, in words.
	Reason string
}

func fail(v Verdict, errno, format string, args ...any) Result {
	return Result{Verdict: v, Errno: errno, Reason: fmt.Sprintf(format, args...)}
}

// Verify checks a detached CMS signature over content with the rules of the
// 6.18 kernel (verify_pkcs7_signature with VERIFYING_BPF_SIGNATURE): parse,
// digest and embedded-certificate checks (pkcs7_verify), then the signer
// must be found in trust (pkcs7_validate_trust), whose key must verify the
// signature. content is the program's instruction bytes (opts_insn).
//
// Verify trusts trust completely and nothing else: embedded certificates
// count only when they chain to a trusted key; certificate expiry is
// checked only against a signed signingTime when the signer's certificate
// is embedded, as in the kernel. It never returns PARTIALSIG or
// UNEXPECTED.
func Verify(sig, content []byte, trust *TrustStore) Result {
	r, _ := verify(sig, content, trust)
	return r
}

// verify returns the verdict and, when OK, the signers that validated
// against trust (in message order).
func verify(sig, content []byte, trust *TrustStore) (Result, []*SignerInfo) {
	if len(sig) == 0 {
		return fail(VerdictUnsigned, "", "no signature"), nil
	}
	if len(sig) > MaxSignatureSize {
		return fail(VerdictFault, "EINVAL", "signature is %d bytes, kernel limit %d", len(sig), MaxSignatureSize), nil
	}
	sd, err := Parse(sig)
	if err != nil {
		var pe *ParseError
		errno := "EBADMSG"
		if errors.As(err, &pe) {
			errno = pe.Errno
		}
		if errors.Is(err, ErrRejected) {
			return fail(VerdictBadSig, errno, "%v", err), nil
		}
		return fail(VerdictFault, errno, "%v", err), nil
	}
	base := Result{
		SignerID:        sd.Signers[0].ID.String(),
		DigestAlgorithm: sd.Signers[0].DigestAlgorithm,
		SignedAttrs:     sd.Signers[0].HasSignedAttrs,
	}
	with := func(r Result) Result {
		r.SignerID, r.DigestAlgorithm, r.SignedAttrs = base.SignerID, base.DigestAlgorithm, base.SignedAttrs
		return r
	}
	if sd.HasContent {
		return with(fail(VerdictFault, "EINVAL", "signature is not detached (content already supplied)")), nil
	}
	if !bytes.Equal(sd.ContentType, oidData) {
		return with(fail(VerdictBadSig, "EKEYREJECTED", "content type is not id-data")), nil
	}
	v := &verifier{sd: sd, content: content, trust: trust, selfSigned: map[*x509.Certificate]bool{}}
	for _, c := range sd.Certificates {
		ss, _ := selfSigned(c) // errors were refused by Parse
		v.selfSigned[c] = ss
	}
	if r, ok := v.verifyAll(); !ok {
		return with(r), nil
	}
	r, ok := v.validateTrust()
	if !ok {
		return with(r), nil
	}
	r = with(r)
	r.Verdict = VerdictOK
	return r, v.trusted
}
