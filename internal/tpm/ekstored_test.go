package tpm_test

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// storedFraming frames a certificate as TCG_PCCLIENT_STORED_CERT (tag
// 0x1001, certType 0, u16 size, big-endian), with the TCG_FULL_CERT tag
// 0x1002 inside when fullTag is set.
func storedFraming(cert []byte, fullTag bool) []byte {
	body := cert
	if fullTag {
		body = append([]byte{0x10, 0x02}, cert...)
	}
	b := []byte{0x10, 0x01, 0x00}
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// TestEKCertificateStoredFraming writes EK certificates into the TPM's NV
// the way some vendors do, framed by the TCG stored-certificate header and
// followed by padding, and reads them back: the certificate comes back
// whole and parses (it used to come back as its first 3 bytes).
func TestEKCertificateStoredFraming(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		cert := selfSignedCert(t)
		for idx, nv := range map[uint32][]byte{
			tpm.EKCertIndexRSA2048: append(storedFraming(cert, false), make([]byte, 200)...),
			tpm.EKCertIndexECCP256: append(storedFraming(cert, true), bytes.Repeat([]byte{0xff}, 64)...),
		} {
			defineNV(t, d, idx, nv)
			got, err := d.EKCertificate(idx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, cert) {
				t.Fatalf("index %#x: %d bytes back, want the %d-byte certificate", idx, len(got), len(cert))
			}
			if _, err := x509.ParseCertificate(got); err != nil {
				t.Fatalf("index %#x: %v", idx, err)
			}
		}
	})
}

// TestEKCertificateNotDER: NV contents that are neither framed nor DER are
// returned as read, for the verifier to judge, not cut or refused.
func TestEKCertificateNotDER(t *testing.T) {
	d := tpmtest.Open(t, "sim")
	nv := slices.Concat([]byte{0x10, 0x01, 0x00, 0xff, 0xff}, selfSignedCert(t)) // size beyond the index
	defineNV(t, d, tpm.EKCertIndexECCP256, nv)
	got, err := d.EKCertificate(tpm.EKCertIndexECCP256)
	if err != nil || !bytes.Equal(got, nv) {
		t.Fatalf("got %d bytes, %v; want the %d bytes as read", len(got), err, len(nv))
	}
}
