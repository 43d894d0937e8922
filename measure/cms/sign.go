package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"time"
)

// Scheme selects the shape of the CMS that Sign produces.
type Scheme uint8

const (
	// SchemeKernel reproduces bpftool gen skeleton -S byte for byte: no
	// signed attributes, no certificates, signer named by
	// subjectKeyIdentifier, SHA-256, rsaEncryption (PKCS#1 v1.5).
	SchemeKernel Scheme = iota
	// SchemeHornet produces what Hornet's reference signing tool does:
	// signed attributes contentType, signingTime (when set), messageDigest
	// and the map-hash attribute (left out when MapHashes is empty), signer
	// named by issuer and serial number, no certificates, no
	// smimeCapabilities. The kernel scheme accepts it too.
	SchemeHornet
)

// SignOptions configures Sign. The zero value is SchemeKernel.
type SignOptions struct {
	Scheme Scheme
	// MapHashes is the content of Hornet's map-hash attribute
	// (SchemeHornet only): at most 63 entries, distinct indexes 0..127,
	// each hash 32 bytes or empty.
	MapHashes []MapHash
	// SigningTime is put in a signingTime attribute (SchemeHornet only);
	// the zero time leaves the attribute out, which keeps the output
	// deterministic for RSA keys.
	SigningTime time.Time
	// Rand is the randomness for ECDSA keys; nil means crypto/rand.
	Rand io.Reader
}

// Sign makes a detached CMS SignedData over content with key, naming cert
// as the signer. RSA keys sign with PKCS#1 v1.5 (deterministic); ECDSA keys
// with ecdsa-with-SHA256. The key must belong to cert.
func Sign(content []byte, key crypto.Signer, cert *x509.Certificate, opts SignOptions) ([]byte, error) {
	if key == nil || cert == nil {
		return nil, fmt.Errorf("cms/sign: %w: key and certificate are required", ErrSign)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("cms/sign: %w: key does not match the certificate", ErrSign)
	}
	t := signTemplate{content: content, key: key, rand: opts.Rand, digestOID: digestAlgs[1].oid}
	switch key.Public().(type) {
	case *rsa.PublicKey:
		t.sigAlg = derSeq(derOID(oidRSAEncryption), derNull)
	case *ecdsa.PublicKey:
		t.sigAlg = derSeq(derOID(oidECDSAWithSHA256))
	default:
		return nil, fmt.Errorf("cms/sign: %w: key type %T", ErrSign, key.Public())
	}
	switch opts.Scheme {
	case SchemeKernel:
		if len(opts.MapHashes) > 0 || !opts.SigningTime.IsZero() {
			return nil, fmt.Errorf("cms/sign: %w: map hashes and signing time need SchemeHornet", ErrSign)
		}
		if len(cert.SubjectKeyId) == 0 {
			return nil, fmt.Errorf("cms/sign: %w: certificate has no subjectKeyIdentifier", ErrSign)
		}
		t.version = 3
		t.sid = tlvBytes(tagCtx0Prim, cert.SubjectKeyId)
	case SchemeHornet:
		serial, issuer, err := rawSerialIssuer(cert.RawTBSCertificate)
		if err != nil {
			return nil, fmt.Errorf("cms/sign: certificate: %w", err)
		}
		t.version = 1
		t.sid = derSeq(tlvBytes(tagSequence, issuer), tlvBytes(tagInteger, serial))
		md := sha256.Sum256(content)
		t.attrs = [][]byte{
			attr(oidContentType, derOID(oidData)),
			attr(oidMessageDigest, tlvBytes(tagOctetString, md[:])),
		}
		if !opts.SigningTime.IsZero() {
			t.attrs = append(t.attrs, attr(oidSigningTime, encodeTime(opts.SigningTime)))
		}
		if len(opts.MapHashes) > 0 {
			v, err := encodeHornetData(opts.MapHashes)
			if err != nil {
				return nil, err
			}
			t.attrs = append(t.attrs, attr(oidHornetData, v))
		}
	default:
		return nil, fmt.Errorf("cms/sign: %w: unknown scheme %d", ErrSign, opts.Scheme)
	}
	out, err := t.build()
	if err != nil {
		return nil, err
	}
	if len(out) > MaxSignatureSize {
		return nil, fmt.Errorf("cms/sign: %w: %d bytes", ErrTooLarge, len(out))
	}
	return out, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// signTemplate is the shape of one single-signer SignedData.
type signTemplate struct {
	content   []byte
	key       crypto.Signer
	rand      io.Reader
	version   byte   // SignedData and SignerInfo version
	sid       []byte // SignerIdentifier encoding
	digestOID []byte
	sigAlg    []byte   // signatureAlgorithm encoding
	attrs     [][]byte // signed attribute encodings; nil = none
	certs     [][]byte // DER certificates to embed
}

func (t *signTemplate) build() ([]byte, error) {
	digestAlg := derSeq(derOID(t.digestOID))
	var signedAttrs []byte
	var toSign []byte
	if t.attrs != nil {
		set := derSetOf(tagSet, t.attrs...)
		toSign = set
		signedAttrs = append([]byte{tagCtx0}, set[1:]...)
	} else {
		toSign = t.content
	}
	d := sha256.Sum256(toSign)
	r := t.rand
	if r == nil {
		r = rand.Reader
	}
	var opts crypto.SignerOpts = crypto.SHA256
	sig, err := t.key.Sign(r, d[:], opts)
	if err != nil {
		return nil, fmt.Errorf("cms/sign: %w", err)
	}
	si := derSeq(derInt(t.version), t.sid, digestAlg, signedAttrs, t.sigAlg, tlvBytes(tagOctetString, sig))
	var certs []byte
	if len(t.certs) > 0 {
		certs = derSetOf(tagCtx0, t.certs...)
	}
	sd := derSeq(
		derInt(t.version),
		tlvBytes(tagSet, digestAlg),
		derSeq(derOID(oidData)),
		certs,
		tlvBytes(tagSet, si),
	)
	return derSeq(derOID(oidSignedData), tlvBytes(tagCtx0, sd)), nil
}

func attr(oid, value []byte) []byte {
	return derSeq(derOID(oid), tlvBytes(tagSet, value))
}

// encodeTime encodes a signingTime as RFC 5652 11.3 asks: UTCTime for 1950
// through 2049, GeneralizedTime otherwise, in UTC with whole seconds.
func encodeTime(t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		return tlvBytes(tagUTCTime, []byte(t.Format("060102150405Z")))
	}
	return tlvBytes(tagGeneralizedTime, []byte(t.Format("20060102150405Z")))
}

// encodeHornetData encodes the map-hash attribute value the way the
// reference tool does: SEQUENCE { SET OF SEQUENCE { INTEGER, OCTET STRING } }.
func encodeHornetData(maps []MapHash) ([]byte, error) {
	if len(maps) > MaxHornetMaps {
		return nil, fmt.Errorf("cms/sign: %w: %d map hashes, at most %d", ErrSign, len(maps), MaxHornetMaps)
	}
	seen := map[uint8]bool{}
	elems := make([][]byte, 0, len(maps))
	for _, m := range maps {
		if m.Index > MaxHornetIndex || seen[m.Index] {
			return nil, fmt.Errorf("cms/sign: %w: map index %d out of range or repeated", ErrSign, m.Index)
		}
		seen[m.Index] = true
		if len(m.SHA256) != 0 && len(m.SHA256) != sha256.Size {
			return nil, fmt.Errorf("cms/sign: %w: map %d hash is %d bytes", ErrSign, m.Index, len(m.SHA256))
		}
		elems = append(elems, derSeq(derInt(m.Index), tlvBytes(tagOctetString, bytes.Clone(m.SHA256))))
	}
	return derSeq(derSetOf(tagSet, elems...)), nil
}
