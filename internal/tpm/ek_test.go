package tpm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestEKCertificate proves that an absent EK certificate is (nil, nil), and
// that a certificate provisioned in NV the way manufacturers do (an NV
// index at the EK Credential Profile address, zero-padded past the DER) is
// read back exactly, across several NV_Read chunks.
func TestEKCertificate(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		for _, idx := range []uint32{tpm.EKCertIndexRSA2048, tpm.EKCertIndexECCP256} {
			der, err := d.EKCertificate(idx)
			if err != nil || der != nil {
				t.Fatalf("EKCertificate(%#x) on an unprovisioned TPM = %x, %v; want nil, nil", idx, der, err)
			}
		}
		cert := selfSignedCert(t)
		const size = 1800 // larger than one NV_Read (TPM_PT_NV_BUFFER_MAX is 1024 on both)
		padded := append(bytes.Clone(cert), make([]byte, size-len(cert))...)
		defineNV(t, d, tpm.EKCertIndexECCP256, padded)

		got, err := d.EKCertificate(tpm.EKCertIndexECCP256)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, cert) {
			t.Fatalf("EKCertificate returned %d bytes, want the %d-byte DER", len(got), len(cert))
		}
		if _, err := x509.ParseCertificate(got); err != nil {
			t.Fatal(err)
		}
		if der, err := d.EKCertificate(tpm.EKCertIndexRSA2048); err != nil || der != nil {
			t.Fatalf("RSA index after provisioning ECC: %x, %v", der, err)
		}
	})
}

func selfSignedCert(tb testing.TB) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test EK"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Unix(1<<32, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// defineNV defines an owner-written, auth-readable NV index holding data,
// the attributes EK certificate indices carry except platform ownership.
func defineNV(tb testing.TB, d *tpm.Device, index uint32, data []byte) {
	tb.Helper()
	tp := d.Transport()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	pub := tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true,
			NT: tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(data)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(pub)}).Execute(tp); err != nil {
		tb.Fatalf("NV_DefineSpace: %v", err)
	}
	rp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(tp)
	if err != nil {
		tb.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		chunk := data[off:min(len(data), off+512)]
		_, err := tpm2.NVWrite{
			AuthHandle: owner,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: rp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: chunk},
			Offset:     uint16(off),
		}.Execute(tp)
		if err != nil {
			tb.Fatalf("NV_Write at %d: %v", off, err)
		}
	}
}
