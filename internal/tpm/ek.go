package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// NV indices of the EK certificates (TCG EK Credential Profile for TPM
// Family 2.0, §2.2.1.4, low range).
const (
	EKCertIndexRSA2048 uint32 = 0x01c00002 // RSA 2048 EK certificate
	EKCertIndexECCP256 uint32 = 0x01c0000a // ECC NIST P-256 EK certificate
)

// nvReadChunk is used when the TPM does not report TPM_PT_NV_BUFFER_MAX.
const nvReadChunk = 512

// EKCertificate reads the certificate stored in NV at index (one of the
// EKCertIndex constants, or another index the platform uses) and returns
// its bytes: without the TCG stored-certificate header when the index has
// one, and without the padding after a DER certificate (see storedCert).
// Contents that are neither are returned as read, for the verifier's
// tolerant parser. When the index is not defined it returns nil and no
// error. It does not parse or check the certificate: that is the
// verifier's job.
func (d *Device) EKCertificate(index uint32) ([]byte, error) {
	var raw []byte
	err := d.do(func(t transport.TPM) error {
		var err error
		raw, err = readNV(t, index)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm/ekcert %#x: %w", index, err)
	}
	if raw == nil {
		return nil, nil
	}
	return storedCert(raw), nil
}

// The TCG stored-certificate framing (TCG PC Client Specific
// Implementation Specification for Conventional BIOS §7.3.2, still found
// in the EK certificate indices of TPM 2.0 parts): TCG_PCCLIENT_STORED_CERT
// is tag u16 0x1001, certType u8 (0: TCG_FULL_CERT), certSize u16, then the
// TCG_FULL_CERT, which may itself begin with its tag 0x1002 before the DER
// certificate. All big-endian.
const (
	storedCertTag = 0x1001
	fullCertTag   = 0x1002
	fullCertType  = 0
	storedCertHdr = 5
)

// storedCert returns the certificate in an EK certificate NV index's
// contents: without the TCG stored-certificate framing when it is there,
// then cut at the end of a DER SEQUENCE when the bytes start with one (NV
// indices are often larger than the certificate and padded). Anything else
// is returned unchanged, for the verifier to judge: cutting by a length
// that is not a DER length is what once reduced a framed certificate to
// its first 3 bytes.
func storedCert(b []byte) []byte {
	if len(b) >= storedCertHdr && binary.BigEndian.Uint16(b) == storedCertTag && b[2] == fullCertType {
		if n := int(binary.BigEndian.Uint16(b[3:])); storedCertHdr+n <= len(b) {
			b = b[storedCertHdr : storedCertHdr+n]
			if len(b) >= 2 && binary.BigEndian.Uint16(b) == fullCertTag {
				b = b[2:]
			}
		}
	}
	if len(b) > 0 && b[0] == 0x30 { // SEQUENCE, constructed: a certificate
		if n, err := derLength(b); err == nil {
			return b[:n]
		}
	}
	return b
}

// readNV reads a whole NV index. An undefined index is (nil, nil).
func readNV(t transport.TPM, index uint32) ([]byte, error) {
	h := tpm2.TPMHandle(index)
	rp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nv/readpublic: %w", err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("nv/readpublic: %w", err)
	}
	auth := tpm2.AuthHandle{Handle: h, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)}
	if !pub.Attributes.AuthRead && pub.Attributes.OwnerRead {
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	}
	chunk := nvBufferMax(t)
	var out bytes.Buffer
	for off := 0; off < int(pub.DataSize); off += chunk {
		n := min(chunk, int(pub.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("nv/read offset %d: %w", off, err)
		}
		if len(rsp.Data.Buffer) != n {
			return nil, fmt.Errorf("nv/read offset %d: got %d bytes, asked %d", off, len(rsp.Data.Buffer), n)
		}
		out.Write(rsp.Data.Buffer)
	}
	return out.Bytes(), nil
}

// nvBufferMax reads TPM_PT_NV_BUFFER_MAX, falling back to nvReadChunk.
func nvBufferMax(t transport.TPM) int {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTNVBufferMax),
		PropertyCount: 1,
	}.Execute(t)
	if err != nil {
		return nvReadChunk
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return nvReadChunk
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTNVBufferMax && p.Value > 0 && p.Value <= 0xffff {
			return int(p.Value)
		}
	}
	return nvReadChunk
}

// derLength returns the length of the DER element (tag, length, content)
// at the start of b (ITU-T X.690 §8.1). Only definite lengths are accepted,
// as DER requires.
func derLength(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, fmt.Errorf("der: %d bytes, too short", len(b))
	}
	if b[0]&0x1f == 0x1f {
		return 0, fmt.Errorf("der: offset 0: multi-byte tag %#x not expected", b[0])
	}
	l, hdr := int(b[1]), 2
	switch {
	case l == 0x80:
		return 0, fmt.Errorf("der: offset 1: indefinite length")
	case l > 0x80:
		n := l & 0x7f
		if n > 4 || len(b) < 2+n {
			return 0, fmt.Errorf("der: offset 1: length of %d bytes", n)
		}
		l = 0
		for _, c := range b[2 : 2+n] {
			l = l<<8 | int(c)
		}
		hdr += n
	}
	if l > len(b)-hdr {
		return 0, fmt.Errorf("der: offset %d: content of %d bytes, %d present", hdr, l, len(b)-hdr)
	}
	return hdr + l, nil
}
