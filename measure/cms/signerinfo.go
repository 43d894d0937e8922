package cms

import "bytes"

// signerInfo parses one SignerInfo (pkcs7.asn1) and applies the checks the
// kernel's actions make while decoding it.
func (p *parser) signerInfo() error {
	const field = "SignerInfo"
	f, err := p.c.enter(tagSequence, field)
	if err != nil {
		return err
	}
	var si SignerInfo
	v, err := p.c.leaf(tagInteger, field+".version")
	if err != nil {
		return err
	}
	if len(v.content) != 1 || (v.content[0] != 1 && v.content[0] != 3) {
		return newParseError(v.off, field+".version", "EINVAL", ErrUnsupported, "version %x not 1 or 3", v.content)
	}
	si.Version = int(v.content[0])
	switch {
	case si.Version == 1 && p.sd.Version != 1, si.Version == 3 && p.sd.Version == 1:
		return newParseError(v.off, field+".version", "EBADMSG", ErrMalformed, "SignerInfo version %d with SignedData version %d", si.Version, p.sd.Version)
	}
	p.expectSKID = si.Version == 3

	if err := p.signerIdentifier(); err != nil {
		return err
	}
	dOID, err := p.algorithm(field + ".digestAlgorithm")
	if err != nil {
		return err
	}
	d, ok := lookupDigest(dOID)
	if !ok {
		return newParseError(p.c.dp, field+".digestAlgorithm", "ENOPKG", ErrUnsupported, "unknown digest algorithm")
	}
	si.DigestAlgorithm = d.name

	if tag, ok, err := p.optional(field+".authenticatedAttributes", tagCtx0, tagCtx2); err != nil {
		return err
	} else if ok {
		if err := p.signedAttributes(tag, &si); err != nil {
			return err
		}
	}

	sOID, err := p.algorithm(field + ".digestEncryptionAlgorithm")
	if err != nil {
		return err
	}
	pk, ok := lookupPkey(sOID)
	if !ok {
		return newParseError(p.c.dp, field+".digestEncryptionAlgorithm", "ENOPKG", ErrUnsupported, "unsupported signature algorithm")
	}
	si.SignatureAlgorithm = pk.name
	s, err := p.c.leaf(tagOctetString, field+".encryptedDigest")
	if err != nil {
		return err
	}
	si.Signature = s.content

	if tag, ok, err := p.optional(field+".unauthenticatedAttributes", tagCtx1, tagCtx3); err != nil {
		return err
	} else if ok {
		if err := p.listOf(tag, field+".unauthenticatedAttributes", func() error {
			_, err := p.attribute(field + ".unauthenticatedAttributes")
			return err
		}); err != nil {
			return err
		}
	}
	if err := p.c.leave(f, field); err != nil {
		return err
	}
	if bytes.Equal(p.dataType, oidMSIndirectData) && !si.HasSignedAttrs {
		return newParseError(f.off, field, "EBADMSG", ErrMalformed, "Authenticode requires signed attributes")
	}
	if p.expectSKID {
		si.ID = SignerID{SKID: append([]byte{}, p.rawSKID...)}
	} else {
		si.ID = SignerID{Serial: p.rawSerial, Issuer: p.rawIssuer}
		if si.ID.Serial == nil {
			si.ID.Serial = []byte{}
		}
	}
	p.sd.Signers = append(p.sd.Signers, si)
	return nil
}

// signerIdentifier parses CHOICE { issuerAndSerialNumber, [0] IMPLICIT
// subjectKeyIdentifier } into the shared parse context. Which piece is used
// is decided by the SignerInfo version, not by the choice made here.
func (p *parser) signerIdentifier() error {
	const field = "SignerInfo.sid"
	t, err := p.c.peek(field)
	if err != nil {
		return err
	}
	switch {
	case tagMatches(tagSequence, t):
		f, err := p.c.enter(tagSequence, field)
		if err != nil {
			return err
		}
		name, err := p.c.enter(tagSequence, field+".issuer")
		if err != nil {
			return err
		}
		// Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF
		// AttributeValueAssertion); walked for the decoder's rules only.
		for {
			if err := p.listOf(tagSet, field+".issuer.rdn", func() error {
				ava, err := p.c.enter(tagSequence, field+".issuer.ava")
				if err != nil {
					return err
				}
				if _, err := p.c.leaf(tagOID, field+".issuer.ava.type"); err != nil {
					return err
				}
				if _, err := p.c.any(field + ".issuer.ava.value"); err != nil {
					return err
				}
				return p.c.leave(ava, field+".issuer.ava")
			}); err != nil {
				return err
			}
			more, err := p.c.more(name, field+".issuer")
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
		if err := p.c.leave(name, field+".issuer"); err != nil {
			return err
		}
		p.rawIssuer = name.content
		serial, err := p.c.leaf(tagInteger, field+".serialNumber")
		if err != nil {
			return err
		}
		p.rawSerial = serial.content
		return p.c.leave(f, field)
	case t == tagCtx0Prim:
		v, err := p.c.leaf(tagCtx0Prim, field+".subjectKeyIdentifier")
		if err != nil {
			return err
		}
		p.rawSKID = v.content
		return nil
	}
	return p.c.errf(field, "EBADMSG", "unexpected tag %#02x for SignerIdentifier", t)
}

// attribute parses Attribute ::= SEQUENCE { type OID, values SET OF ANY }.
func (p *parser) attribute(field string) (Attribute, error) {
	f, err := p.c.enter(tagSequence, field)
	if err != nil {
		return Attribute{}, err
	}
	oid, err := p.c.leaf(tagOID, field+".type")
	if err != nil {
		return Attribute{}, err
	}
	a := Attribute{OID: oid.content}
	if err := p.listOf(tagSet, field+".values", func() error {
		v, err := p.c.any(field + ".values")
		if err != nil {
			return err
		}
		a.Values = append(a.Values, AttributeValue{Tag: v.tag, Content: v.content})
		return nil
	}); err != nil {
		return Attribute{}, err
	}
	return a, p.c.leave(f, field)
}
