package cms

import (
	"bytes"
	"crypto/x509"
)

// ASN.1 tags the PKCS#7 grammar expects.
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagOID         = 0x06
	tagSequence    = 0x30
	tagSet         = 0x31
	tagCtx0        = 0xa0 // [0] constructed
	tagCtx1        = 0xa1
	tagCtx2        = 0xa2
	tagCtx3        = 0xa3
	tagCtx0Prim    = 0x80 // [0] IMPLICIT OCTET STRING (subjectKeyIdentifier)
)

// parser holds the state the kernel keeps across the whole message: the
// signer-identifier pieces live in the parse context, not per signer, so a
// version-1 signer after a version-3 one reuses stale pieces exactly as the
// kernel does.
type parser struct {
	c          cursor
	sd         *SignedData
	dataType   []byte
	rawSerial  []byte
	rawIssuer  []byte
	rawSKID    []byte
	expectSKID bool
}

// Parse decodes a CMS SignedData as the kernel's pkcs7_parse_message does,
// accepting the same BER forms and ignoring bytes after the outer
// ContentInfo (see docs/cms-verification.md for every rule). Errors are
// *ParseError values wrapping ErrMalformed, ErrUnsupported, ErrRejected or
// ErrTooLarge. Parse never verifies a signature.
func Parse(b []byte) (*SignedData, error) {
	if len(b) > MaxSignatureSize {
		return nil, newParseError(0, "signature", "EINVAL", ErrTooLarge, "%d bytes, kernel limit %d", len(b), MaxSignatureSize)
	}
	sd := &SignedData{}
	p := &parser{sd: sd, c: cursor{data: b, end: len(b), ber: &sd.BER}}
	if err := p.contentInfo(); err != nil {
		return nil, err
	}
	sd.Length = p.c.dp
	sd.Trailing = len(b) - p.c.dp
	if len(sd.Signers) == 0 {
		return nil, newParseError(p.c.dp, "SignedData.signerInfos", "EINVAL", ErrMalformed, "no signer")
	}
	for _, s := range sd.Signers[1:] {
		if s.HasSignedAttrs != sd.Signers[0].HasSignedAttrs {
			return nil, newParseError(0, "SignerInfo.authenticatedAttributes", "EINVAL", ErrMalformed, "signed attributes supplied inconsistently")
		}
	}
	return sd, nil
}

// optional reports whether an OPTIONAL element with one of the tags is next.
func (p *parser) optional(field string, tags ...byte) (byte, bool, error) {
	if p.c.atEnd() {
		return 0, false, nil
	}
	t, err := p.c.peek(field)
	if err != nil {
		return 0, false, err
	}
	for _, want := range tags {
		if tagMatches(want, t) {
			return want, true, nil
		}
	}
	return 0, false, nil
}

func (p *parser) contentInfo() error {
	f, err := p.c.enter(tagSequence, "ContentInfo")
	if err != nil {
		return err
	}
	oid, err := p.c.leaf(tagOID, "ContentInfo.contentType")
	if err != nil {
		return err
	}
	if !bytes.Equal(oid.content, oidSignedData) {
		return newParseError(oid.off, "ContentInfo.contentType", "EINVAL", ErrUnsupported, "content type is not signedData")
	}
	if _, ok, err := p.optional("ContentInfo.content", tagCtx0); err != nil {
		return err
	} else if ok {
		x, err := p.c.enter(tagCtx0, "ContentInfo.content")
		if err != nil {
			return err
		}
		if err := p.signedData(); err != nil {
			return err
		}
		if err := p.c.leave(x, "ContentInfo.content"); err != nil {
			return err
		}
	}
	return p.c.leave(f, "ContentInfo")
}

func (p *parser) signedData() error {
	f, err := p.c.enter(tagSequence, "SignedData")
	if err != nil {
		return err
	}
	v, err := p.c.leaf(tagInteger, "SignedData.version")
	if err != nil {
		return err
	}
	if len(v.content) != 1 || (v.content[0] != 1 && v.content[0] != 3) {
		return newParseError(v.off, "SignedData.version", "EINVAL", ErrUnsupported, "version %x not 1 or 3", v.content)
	}
	p.sd.Version = int(v.content[0])
	if err := p.setOrSeqOf("SignedData.digestAlgorithms", func() error {
		_, err := p.algorithm("SignedData.digestAlgorithms")
		return err
	}); err != nil {
		return err
	}
	if err := p.encapContentInfo(); err != nil {
		return err
	}
	if tag, ok, err := p.optional("SignedData.certificates", tagCtx0, tagCtx2); err != nil {
		return err
	} else if ok {
		certs, err := p.certificateSet(tag, "SignedData.certificates")
		if err != nil {
			return err
		}
		p.sd.Certificates = certs
	}
	if tag, ok, err := p.optional("SignedData.crls", tagCtx1, tagCtx3); err != nil {
		return err
	} else if ok {
		if err := p.crls(tag); err != nil {
			return err
		}
	}
	if err := p.setOrSeqOf("SignedData.signerInfos", p.signerInfo); err != nil {
		return err
	}
	return p.c.leave(f, "SignedData")
}

// setOrSeqOf parses CHOICE { SET OF x, SEQUENCE OF x } with at least one x.
func (p *parser) setOrSeqOf(field string, elem func() error) error {
	t, err := p.c.peek(field)
	if err != nil {
		return err
	}
	want := byte(tagSet)
	if !tagMatches(tagSet, t) {
		want = tagSequence
	}
	return p.listOf(want, field, elem)
}

// listOf parses a SET OF or SEQUENCE OF with the given tag, at least one
// element long, as the kernel's decoder requires.
func (p *parser) listOf(tag byte, field string, elem func() error) error {
	f, err := p.c.enter(tag, field)
	if err != nil {
		return err
	}
	return p.elements(f, field, elem)
}

// elements parses the elements of f, an entered SET OF or SEQUENCE OF, at
// least one, and leaves it.
func (p *parser) elements(f *frame, field string, elem func() error) error {
	for {
		if err := elem(); err != nil {
			return err
		}
		more, err := p.c.more(f, field)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	return p.c.leave(f, field)
}

// algorithm parses AlgorithmIdentifier ::= SEQUENCE { OID, ANY OPTIONAL }
// and returns the OID content. The optional ANY is taken whenever the
// container is not exhausted, which inside an indefinite-length SEQUENCE
// means the end-of-contents itself is read as the parameters (the kernel's
// decoder does this; see docs/cms-verification.md).
func (p *parser) algorithm(field string) ([]byte, error) {
	f, err := p.c.enter(tagSequence, field)
	if err != nil {
		return nil, err
	}
	oid, err := p.c.leaf(tagOID, field+".algorithm")
	if err != nil {
		return nil, err
	}
	if !p.c.atEnd() {
		if _, err := p.c.any(field + ".parameters"); err != nil {
			return nil, err
		}
	}
	if err := p.c.leave(f, field); err != nil {
		return nil, err
	}
	return oid.content, nil
}

func (p *parser) encapContentInfo() error {
	f, err := p.c.enter(tagSequence, "SignedData.encapContentInfo")
	if err != nil {
		return err
	}
	oid, err := p.c.leaf(tagOID, "SignedData.encapContentInfo.eContentType")
	if err != nil {
		return err
	}
	if _, ok, err := p.optional("SignedData.encapContentInfo.eContent", tagCtx0); err != nil {
		return err
	} else if ok {
		x, err := p.c.enter(tagCtx0, "SignedData.encapContentInfo.eContent")
		if err != nil {
			return err
		}
		d, err := p.c.any("SignedData.encapContentInfo.eContent")
		if err != nil {
			return err
		}
		p.sd.Content, p.sd.HasContent = d.content, true
		if err := p.c.leave(x, "SignedData.encapContentInfo.eContent"); err != nil {
			return err
		}
	}
	if err := p.c.leave(f, "SignedData.encapContentInfo"); err != nil {
		return err
	}
	if !bytes.Equal(oid.content, oidData) && !bytes.Equal(oid.content, oidMSIndirectData) {
		return newParseError(oid.off, "SignedData.encapContentInfo.eContentType", "EINVAL", ErrUnsupported, "content type is neither data nor msIndirectData")
	}
	p.sd.ContentType = oid.content
	p.dataType = oid.content
	return nil
}

// certificateSet parses [0] IMPLICIT SET OF / [2] IMPLICIT SEQUENCE OF
// certificates. Each element must be a SEQUENCE that parses as X.509.
func (p *parser) certificateSet(tag byte, field string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	err := p.listOf(tag, field, func() error {
		c, err := p.certificate(field)
		if err != nil {
			return err
		}
		certs = append(certs, c)
		return nil
	})
	return certs, err
}

func (p *parser) certificate(field string) (*x509.Certificate, error) {
	v, err := p.c.any(field)
	if err != nil {
		return nil, err
	}
	if v.tag != tagSequence {
		return nil, newParseError(v.off, field, "EBADMSG", ErrMalformed, "certificate begins with tag %#02x", v.tag)
	}
	raw := p.c.data[v.off : v.off+v.hdr+len(v.content)]
	cert, err := x509.ParseCertificate(raw)
	if err != nil {
		return nil, newParseError(v.off, field, "EBADMSG", ErrMalformed, "x509: %v", err)
	}
	if err := checkSelfSigned(cert); err != nil {
		return nil, newParseError(v.off, field, "EKEYREJECTED", ErrRejected, "%v", err)
	}
	return cert, nil
}

// crls parses the crls field. The kernel's grammar reads each CRL as a
// SEQUENCE OF certificates, so a real CRL never parses; the parsed
// "certificates" are discarded.
func (p *parser) crls(tag byte) error {
	return p.listOf(tag, "SignedData.crls", func() error {
		return p.listOf(tagSequence, "SignedData.crls.CertificateList", func() error {
			_, err := p.certificate("SignedData.crls.CertificateList")
			return err
		})
	})
}
