package cms

import "bytes"

// signedAttributes parses the authenticatedAttributes of a SignerInfo and
// applies the kernel's rules (pkcs7_sig_note_authenticated_attr and
// pkcs7_sig_note_set_of_authattrs):
//
//   - contentType, signingTime, messageDigest, smimeCapabilities and the two
//     Authenticode attributes may appear once, with one value
//     (EKEYREJECTED otherwise); other attributes are not looked at;
//   - contentType must equal eContentType (EBADMSG);
//   - messageDigest must be an OCTET STRING (EBADMSG);
//   - signingTime must decode (EBADMSG);
//   - smimeCapabilities and the Authenticode attributes are refused for
//     non-Authenticode content (EKEYREJECTED);
//   - with the [0] IMPLICIT form, contentType and messageDigest are
//     mandatory (EBADMSG) and the attributes are digested for the signature.
//
// The [2] EXPLICIT SEQUENCE OF form is decoded and checked the same way but,
// as in the kernel, is not digested: the signature is then over the
// content digest alone.
func (p *parser) signedAttributes(tag byte, si *SignerInfo) error {
	const field = "SignerInfo.authenticatedAttributes"
	seen := map[string]bool{}
	each := func() error {
		a, err := p.attribute(field)
		if err != nil {
			return err
		}
		for _, v := range a.Values {
			if err := p.checkAttr(a.OID, v, si, seen); err != nil {
				return err
			}
		}
		si.SignedAttrs = append(si.SignedAttrs, a)
		return nil
	}
	if tag == tagCtx2 {
		outer, err := p.c.enter(tagCtx2, field)
		if err != nil {
			return err
		}
		if err := p.listOf(tagSequence, field, each); err != nil {
			return err
		}
		if err := p.c.leave(outer, field); err != nil {
			return err
		}
		si.SignedAttrs = nil // not signed attributes as far as the kernel digests
		return nil
	}
	f, err := p.c.enter(tagCtx0, field)
	if err != nil {
		return err
	}
	if err := p.elements(f, field, each); err != nil {
		return err
	}
	if !seen["contentType"] || !seen["messageDigest"] {
		return newParseError(f.off, field, "EBADMSG", ErrMalformed, "missing required attribute (contentType and messageDigest)")
	}
	if !bytes.Equal(p.dataType, oidMSIndirectData) && seen["msSpOpusInfo"] {
		return newParseError(f.off, field, "EBADMSG", ErrMalformed, "Authenticode attribute without Authenticode content")
	}
	// The kernel digests SET tag || the [0] element's length octets and
	// content as encoded (without an end-of-contents).
	raw := make([]byte, 0, 1+f.hdr-1+len(f.content))
	raw = append(raw, tagSet)
	raw = append(raw, p.c.data[f.off+1:f.start]...)
	raw = append(raw, f.content...)
	si.RawSignedAttrs = raw
	si.HasSignedAttrs = true
	si.signedAttrsIndef = f.indef
	return nil
}

func (p *parser) checkAttr(oid []byte, v AttributeValue, si *SignerInfo, seen map[string]bool) error {
	const field = "SignerInfo.authenticatedAttributes"
	off := p.c.dp
	once := func(name string) error {
		if seen[name] {
			return newParseError(off, field, "EKEYREJECTED", ErrRejected, "repeated or multi-valued %s attribute", name)
		}
		seen[name] = true
		return nil
	}
	authenticodeOnly := func(name string) error {
		if err := once(name); err != nil {
			return err
		}
		if !bytes.Equal(p.dataType, oidMSIndirectData) {
			return newParseError(off, field, "EKEYREJECTED", ErrRejected, "%s attribute only allowed with Authenticode", name)
		}
		return nil
	}
	switch {
	case bytes.Equal(oid, oidContentType):
		if err := once("contentType"); err != nil {
			return err
		}
		if !bytes.Equal(v.Content, p.dataType) {
			return newParseError(off, field, "EBADMSG", ErrMalformed, "contentType attribute differs from eContentType")
		}
	case bytes.Equal(oid, oidSigningTime):
		if err := once("signingTime"); err != nil {
			return err
		}
		t, ok := decodeTime(v.Tag, v.Content)
		if !ok {
			return newParseError(off, field, "EBADMSG", ErrMalformed, "signingTime does not decode")
		}
		si.SigningTime, si.HasSigningTime = t, true
	case bytes.Equal(oid, oidMessageDigest):
		if err := once("messageDigest"); err != nil {
			return err
		}
		if v.Tag != tagOctetString {
			return newParseError(off, field, "EBADMSG", ErrMalformed, "messageDigest is not an OCTET STRING")
		}
		si.MessageDigest = v.Content
	case bytes.Equal(oid, oidSMIMECapabilities):
		return authenticodeOnly("smimeCapabilities")
	case bytes.Equal(oid, oidMSSpOpusInfo):
		return authenticodeOnly("msSpOpusInfo")
	case bytes.Equal(oid, oidMSStatementType):
		return authenticodeOnly("msStatementType")
	}
	return nil
}
