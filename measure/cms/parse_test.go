package cms

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"testing"
)

// TestOIDConstants checks the hand-written OID encodings against
// encoding/asn1 (all but Hornet's, whose arc it cannot hold).
func TestOIDConstants(t *testing.T) {
	cases := map[string]struct {
		got []byte
		oid asn1.ObjectIdentifier
	}{
		"signedData":        {oidSignedData, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}},
		"data":              {oidData, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}},
		"msIndirectData":    {oidMSIndirectData, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}},
		"contentType":       {oidContentType, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}},
		"messageDigest":     {oidMessageDigest, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}},
		"signingTime":       {oidSigningTime, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}},
		"smimeCapabilities": {oidSMIMECapabilities, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}},
		"rsaEncryption":     {oidRSAEncryption, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}},
		"ecdsa-with-SHA256": {oidECDSAWithSHA256, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}},
		"sha256":            {digestAlgs[1].oid, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}},
		"sha3-512":          {digestAlgs[10].oid, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 10}},
		"sm3":               {digestAlgs[5].oid, asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}},
	}
	for name, c := range cases {
		der, err := asn1.Marshal(c.oid)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(der[2:], c.got) {
			t.Errorf("%s: %x, want %x", name, c.got, der[2:])
		}
	}
	want := []byte{0x06, 0x14, 0x69, 0x83, 0xdc, 0x99, 0x9e, 0xf8, 0xf5, 0xe6, 0x9a, 0x9e, 0xb5, 0xba, 0xc6, 0xac, 0xad, 0x9b, 0xfe, 0xf7, 0xda, 0x18}
	if !bytes.Equal(derOID(oidHornetData), want) {
		t.Errorf("hornet OID %x", derOID(oidHornetData))
	}
}

// TestParseFixtures reads bpftool's signatures: DER, one v3 signer by
// SKID, SHA-256 + RSA, detached, no certificates, no attributes.
func TestParseFixtures(t *testing.T) {
	for _, n := range signedFixtures {
		f := loadFixture(t, n)
		sd, err := Parse(f.sig)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		si := sd.Signers[0]
		if sd.Version != 3 || sd.BER || sd.HasContent || sd.Trailing != 0 || sd.Length != 375 || len(sd.Certificates) != 0 ||
			len(sd.Signers) != 1 || si.Version != 3 || si.HasSignedAttrs || si.DigestAlgorithm != "sha256" ||
			si.SignatureAlgorithm != "rsa" || len(si.Signature) != 256 || si.ID.String() != "skid:de0e7eb4aae9b5c8b36b02283248e0f06a4140c3" {
			t.Errorf("%s: unexpected parse %+v", n, sd)
		}
	}
}

// TestParseBERForms: the forms the kernel's decoder accepts parse, with
// BER flagged; the forms it refuses fail with the field and offset named.
func TestParseBERForms(t *testing.T) {
	f := loadFixture(t, "counter")
	tree := parseDER(t, f.sig)
	ok := map[string][]byte{
		"indefinite outer":     tree.encode(encStyle{indef: func(d int, _ *node) bool { return d <= 2 }}, 0),
		"non-minimal lengths":  tree.encode(encStyle{longLen: 2}, 0),
		"one-octet long form":  append([]byte{0x30, 0x82, 0x01, 0x73}, f.sig[4:]...),
		"trailing bytes":       append(bytes.Clone(f.sig), 1, 2, 3),
		"primitive SEQUENCE":   append([]byte{0x10}, f.sig[1:]...),
		"SEQUENCE signerInfos": setByte(f.sig, 54, 0x30),
	}
	for name, b := range ok {
		sd, err := Parse(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == "trailing bytes" && sd.Trailing != 3 {
			t.Errorf("trailing = %d", sd.Trailing)
		}
	}
	bad := map[string]struct {
		b     []byte
		field string
		class error
	}{
		"empty":                {nil, "ContentInfo", ErrMalformed},
		"three length octets":  {append([]byte{0x30, 0x83, 0x00}, f.sig[2:]...), "ContentInfo", ErrMalformed},
		"high tag number":      {append([]byte{0x3f}, f.sig[1:]...), "ContentInfo", ErrMalformed},
		"truncated":            {f.sig[:300], "ContentInfo", ErrMalformed},
		"indefinite primitive": {append([]byte{0x30, 0x80, 0x06, 0x80}, f.sig[6:]...), "ContentInfo.contentType", ErrMalformed},
		"version 2":            {setByte(f.sig, 25, 2), "SignedData.version", ErrUnsupported},
		"signer version 1":     {setByte(f.sig, 64, 1), "SignerInfo.version", ErrMalformed},
		"not signedData":       {setByte(f.sig, 14, 3), "ContentInfo.contentType", ErrUnsupported},
		"too large":            {make([]byte, MaxSignatureSize+1), "signature", ErrTooLarge},
	}
	for name, c := range bad {
		_, err := Parse(c.b)
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, c.class) || pe.Field != c.field {
			t.Errorf("%s: %v (want field %q, %v)", name, err, c.field, c.class)
		}
	}
}

func setByte(b []byte, off int, v byte) []byte {
	c := bytes.Clone(b)
	c[off] = v
	return c
}

func TestDecodeTime(t *testing.T) {
	good := map[string]string{
		"\x17" + "270102030405Z":   "2027-01-02T03:04:05Z",
		"\x17" + "700101000000Z":   "1970-01-01T00:00:00Z",
		"\x18" + "21260101000000Z": "2126-01-01T00:00:00Z",
		"\x17" + "240229235960Z":   "2024-03-01T00:00:00Z",
	}
	for in, want := range good {
		got, ok := decodeTime(in[0], []byte(in[1:]))
		if !ok || got.Format("2006-01-02T15:04:05Z07:00") != want {
			t.Errorf("%q: %v %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{
		"\x17" + "690101000000Z", "\x18" + "20270101000000Z", "\x17" + "230229000000Z", "\x17" + "27010203040Z",
		"\x17" + "2701020304051", "\x13" + "270102030405Z", "\x17" + "271301000000Z", "\x17" + "27010225000000",
	} {
		if _, ok := decodeTime(in[0], []byte(in[1:])); ok {
			t.Errorf("%q accepted", in)
		}
	}
}
