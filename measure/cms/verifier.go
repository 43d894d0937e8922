package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
)

// verifier carries one verification through the kernel's two phases.
type verifier struct {
	sd         *SignedData
	content    []byte
	trust      *TrustStore
	selfSigned map[*x509.Certificate]bool

	// per signer, in message order
	state   []signerState
	trusted []*SignerInfo
	signer  *x509.Certificate // key that verified the first trusted signer
}

type signerState struct {
	hash        crypto.Hash
	digest      []byte              // what the signature covers
	cert        *x509.Certificate   // embedded signer certificate, if found
	chain       []*x509.Certificate // cert and its embedded issuers
	unsupported bool
}

// verifyAll mirrors pkcs7_verify: for every signer, digest the content
// (and the signed attributes), find an embedded signer certificate by
// issuer+serial, check the signing time against it and verify with it.
// Signers whose algorithms are unsupported are skipped; if all are, the
// result is ENOPKG. ok is false when the verdict is final.
func (v *verifier) verifyAll() (Result, bool) {
	v.state = make([]signerState, len(v.sd.Signers))
	supported := false
	for i := range v.sd.Signers {
		si := &v.sd.Signers[i]
		st := &v.state[i]
		h, newHash, ok := hashFor(si.DigestAlgorithm)
		if !ok {
			st.unsupported = true
			continue
		}
		st.hash = h
		d := sum(newHash, v.content)
		if si.HasSignedAttrs {
			if len(si.MessageDigest) != len(d) {
				return fail(VerdictBadSig, "EBADMSG", "messageDigest is %d bytes, %s gives %d", len(si.MessageDigest), si.DigestAlgorithm, len(d)), false
			}
			if !bytes.Equal(si.MessageDigest, d) {
				return fail(VerdictBadSig, "EKEYREJECTED", "messageDigest does not match the content"), false
			}
			d = sum(newHash, si.RawSignedAttrs)
		}
		st.digest = d
		if !v.findEmbedded(si, st) {
			supported = true
			continue
		}
		if si.HasSigningTime && (si.SigningTime.Before(st.cert.NotBefore) || si.SigningTime.After(st.cert.NotAfter)) {
			return fail(VerdictBadSig, "EKEYREJECTED", "signed outside the signer certificate's validity"), false
		}
		if err := verifyDigest(st.cert.PublicKey, si.SignatureAlgorithm, h, d, si.Signature); err != nil {
			if errors.Is(err, errUnsupportedK) {
				st.unsupported = true
				continue
			}
			return fail(VerdictBadSig, "EKEYREJECTED", "signature does not verify with the embedded signer certificate: %v", err), false
		}
		if r, ok := v.chain(st); !ok {
			return r, false
		}
		supported = true
	}
	if !supported {
		return fail(VerdictFault, "ENOPKG", "no signer uses an algorithm this verifier implements (%s/%s)", v.sd.Signers[0].DigestAlgorithm, v.sd.Signers[0].SignatureAlgorithm), false
	}
	return Result{}, true
}

// findEmbedded mirrors pkcs7_find_key: an embedded certificate is the
// signer when its serial||issuer ID equals the signer's key ID. A
// subjectKeyIdentifier signer ID is compared with that same ID, so it never
// selects an embedded certificate.
func (v *verifier) findEmbedded(si *SignerInfo, st *signerState) bool {
	kid := si.ID.KeyID()
	for _, c := range v.sd.Certificates {
		ids, err := idsOf(c)
		if err != nil || !bytes.Equal(ids.id, kid) {
			continue
		}
		st.cert = c
		st.chain = []*x509.Certificate{c}
		return true
	}
	return false
}

// chain mirrors pkcs7_verify_sig_chain for the parts Go exposes: from the
// signer certificate, follow authorityKeyIdentifier to an embedded
// certificate with that subjectKeyIdentifier and verify each link, until a
// self-signed certificate, a loop or a missing issuer.
func (v *verifier) chain(st *signerState) (Result, bool) {
	x := st.cert
	seen := map[*x509.Certificate]bool{}
	for {
		seen[x] = true
		if v.selfSigned[x] || len(x.AuthorityKeyId) == 0 {
			return Result{}, true
		}
		var p *x509.Certificate
		for _, c := range v.sd.Certificates {
			if len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, x.AuthorityKeyId) {
				p = c
				break
			}
		}
		if p == nil || seen[p] {
			return Result{}, true
		}
		if err := p.CheckSignature(x.SignatureAlgorithm, x.RawTBSCertificate, x.Signature); err != nil {
			return fail(VerdictBadSig, "EKEYREJECTED", "embedded certificate chain does not verify: %v", err), false
		}
		st.chain = append(st.chain, p)
		x = p
	}
}

// validateTrust mirrors pkcs7_validate_trust: a signer is trusted when a
// certificate of its embedded chain is a trusted key, when the top of that
// chain names a trusted issuer, or (last resort) when its signer ID names a
// trusted key directly; that key must then verify. One trusted signer is
// enough; ENOKEY for all gives UNKNOWNKEY; a verification failure against a
// trusted key is final.
func (v *verifier) validateTrust() (Result, bool) {
	anyUnsupported := false
	for i := range v.sd.Signers {
		si, st := &v.sd.Signers[i], &v.state[i]
		if st.unsupported {
			anyUnsupported = true
			continue
		}
		key, tbsOf, ok := v.trustAnchor(si, st)
		if !ok {
			continue
		}
		var err error
		if tbsOf == nil {
			err = verifyDigest(key.cert.PublicKey, si.SignatureAlgorithm, st.hash, st.digest, si.Signature)
		} else {
			err = key.cert.CheckSignature(tbsOf.SignatureAlgorithm, tbsOf.RawTBSCertificate, tbsOf.Signature)
		}
		if err != nil {
			return fail(VerdictBadSig, "EKEYREJECTED", "signature does not verify with the trusted key: %v", err), false
		}
		v.trusted = append(v.trusted, si)
		if v.signer == nil {
			v.signer = key.cert
			if st.cert != nil {
				v.signer = st.cert
			}
		}
	}
	if len(v.trusted) > 0 {
		return Result{Signer: v.signer}, true
	}
	if anyUnsupported {
		return fail(VerdictFault, "ENOPKG", "no supported signer; unsupported algorithm"), false
	}
	// Formatted only now: the signer's name is words for a refusal.
	return fail(VerdictUnknownKey, "ENOKEY", "signer %s not in the trust store", v.sd.Signers[0].ID), false
}

// trustAnchor finds the trusted key for one signer. tbsOf is nil when the
// key must verify the SignerInfo signature itself, or the certificate whose
// signature the key must verify.
func (v *verifier) trustAnchor(si *SignerInfo, st *signerState) (trustedKey, *x509.Certificate, bool) {
	var last *x509.Certificate
	for i, x := range st.chain {
		ids, err := idsOf(x)
		if err != nil {
			break
		}
		if k, ok := v.trust.find(ids.id, ids.skid); ok {
			if i == 0 {
				return k, nil, true
			}
			return k, st.chain[i-1], true
		}
		if v.selfSigned[x] {
			return trustedKey{}, nil, false
		}
		last = x
	}
	if last != nil && len(last.AuthorityKeyId) > 0 {
		if k, ok := v.trust.find(nil, last.AuthorityKeyId); ok {
			return k, last, true
		}
	}
	if k, ok := v.trust.find(si.ID.KeyID(), nil); ok {
		return k, nil, true
	}
	return trustedKey{}, nil, false
}
