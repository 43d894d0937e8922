package cms

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
)

// certIDs are the identifiers the kernel's X.509 parser gives a
// certificate (x509_cert_parse): id = serial || issuer content octets,
// skid = subjectKeyIdentifier (nil without the extension).
type certIDs struct {
	id   []byte
	skid []byte
}

func idsOf(c *x509.Certificate) (certIDs, error) {
	serial, issuer, err := rawSerialIssuer(c.RawTBSCertificate)
	if err != nil {
		return certIDs{}, err
	}
	id := append(append([]byte{}, serial...), issuer...)
	var skid []byte
	if len(c.SubjectKeyId) > 0 {
		skid = c.SubjectKeyId
	}
	return certIDs{id: id, skid: skid}, nil
}

// rawSerialIssuer returns the content octets of serialNumber and issuer
// from a DER TBSCertificate (RFC 5280 4.1).
func rawSerialIssuer(tbs []byte) (serial, issuer []byte, err error) {
	var ber bool
	c := cursor{data: tbs, end: len(tbs), ber: &ber}
	if _, err := c.enter(tagSequence, "TBSCertificate"); err != nil {
		return nil, nil, err
	}
	if t, err := c.peek("TBSCertificate.version"); err != nil {
		return nil, nil, err
	} else if t == tagCtx0 {
		if _, err := c.any("TBSCertificate.version"); err != nil {
			return nil, nil, err
		}
	}
	s, err := c.leaf(tagInteger, "TBSCertificate.serialNumber")
	if err != nil {
		return nil, nil, err
	}
	if _, err := c.any("TBSCertificate.signature"); err != nil {
		return nil, nil, err
	}
	is, err := c.leaf(tagSequence, "TBSCertificate.issuer")
	if err != nil {
		return nil, nil, err
	}
	return s.content, is.content, nil
}

// selfSigned reports whether the kernel treats c as self-signed
// (x509_check_for_self_signed): subject equals issuer, any authority key
// identifier names the certificate itself, and its own signature verifies.
// A certificate that claims to be self-signed but whose signature fails is
// an error; one whose algorithm is unsupported is simply not self-signed.
func selfSigned(c *x509.Certificate) (bool, error) {
	if !bytes.Equal(c.RawSubject, c.RawIssuer) {
		return false, nil
	}
	if len(c.AuthorityKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
		return false, nil
	}
	err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature)
	var insecure x509.InsecureAlgorithmError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, x509.ErrUnsupportedAlgorithm), errors.As(err, &insecure):
		return false, nil
	}
	return false, fmt.Errorf("cms/self-signed: %w", err)
}

func checkSelfSigned(c *x509.Certificate) error {
	_, err := selfSigned(c)
	return err
}
