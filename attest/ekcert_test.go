package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// testCA is a generated certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func issue(tb testing.TB, tmpl *x509.Certificate, parent *testCA, pub any, self *ecdsa.PrivateKey) *x509.Certificate {
	tb.Helper()
	pc, signer := tmpl, self
	if parent != nil {
		pc, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, pub, signer)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// newCA makes a root CA (parent nil) or an intermediate under parent.
func newCA(tb testing.TB, cn string, parent *testCA) *testCA {
	tb.Helper()
	now := time.Now()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	k := newKey(tb)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	return &testCA{cert: issue(tb, tmpl, parent, &k.PublicKey, k), key: k}
}

// tpmSAN encodes a critical subjectAltName whose directoryName holds the
// TCG TPM attributes, one attribute per RDN as the EK Credential Profile's
// examples do.
func tpmSAN(tb testing.TB, id TPMIdentity) []byte {
	tb.Helper()
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value string `asn1:"utf8"`
	}
	var rdns []byte
	for _, a := range []atv{{oidTPMManufacturer, id.Manufacturer}, {oidTPMModel, id.Model}, {oidTPMVersion, id.Version}} {
		b, err := asn1.Marshal(a)
		if err != nil {
			tb.Fatal(err)
		}
		set, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: b})
		if err != nil {
			tb.Fatal(err)
		}
		rdns = append(rdns, set...)
	}
	seq, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: rdns})
	dir, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: seq})
	san, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: dir})
	return san
}

// ekCert issues a profile-shaped EK certificate (empty subject, TPM
// identity in a critical subjectAltName, tcg-kp-EKCertificate) under ca.
func ekCert(tb testing.TB, ca *testCA, id TPMIdentity) []byte {
	tb.Helper()
	now := time.Now()
	k := newKey(tb)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyEncipherment, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidTCGKpEKCertificate},
		ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: tpmSAN(tb, id)}}}
	return issue(tb, tmpl, ca, &k.PublicKey, nil).Raw
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func writeFiles(tb testing.TB, dir string, files map[string][]byte) {
	tb.Helper()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestEKIssuersDir builds a Keylime-style certificate store of three test
// vendors (a root with one intermediate, in PEM and DER files; a root with
// a chain of two intermediates, bundled and DER; a root that signs EK
// certificates itself, in a file with an upper-case extension) among files
// it must ignore, and checks that each vendor's EK certificate verifies
// with its TPM identity, and that one from a fourth vendor, not in the
// store, is refused.
func TestEKIssuersDir(t *testing.T) {
	a, b, c, d := newCA(t, "Vendor A EK Root", nil), newCA(t, "Vendor B EK Root", nil), newCA(t, "Vendor C EK Root", nil), newCA(t, "Vendor D EK Root", nil)
	a1 := newCA(t, "Vendor A EK Issuing CA", a)
	b1 := newCA(t, "Vendor B EK Policy CA", b)
	b2 := newCA(t, "Vendor B EK Issuing CA", b1)
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{
		"vendor-a-root.pem":   pemOf(a.cert),
		"vendor-a-issuer.der": a1.cert.Raw,
		"vendor-b.crt":        pemOf(b.cert, b1.cert),
		"vendor-b-issuer.cer": b2.cert.Raw,
		"vendor-c.PEM":        pemOf(c.cert),
		"README.md":           []byte("EK roots of our fleet's TPM vendors\n"),
		".vendor-d.pem":       pemOf(d.cert),
		"old/vendor-d.pem":    pemOf(d.cert),
	})
	iss, err := LoadEKIssuers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if iss.Certificates != 6 || !slices.Equal(iss.Ignored, []string{".vendor-d.pem", "README.md", "old"}) {
		t.Errorf("%d certificates, ignored %q", iss.Certificates, iss.Ignored)
	}
	ifx := TPMIdentity{Manufacturer: "id:49465800", Model: "SLB9670", Version: "id:00070055"}
	for name, ca := range map[string]*testCA{"vendor A": a1, "vendor B": b2, "vendor C": c} {
		info, err := VerifyEK(ekCert(t, ca, ifx), iss, time.Now())
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if info.TPM != ifx || info.TPM.Vendor() != "IFX" {
			t.Errorf("%s: tpm %+v, vendor %q", name, info.TPM, info.TPM.Vendor())
		}
	}
	if _, err := VerifyEK(ekCert(t, d, ifx), iss, time.Now()); !errors.Is(err, ErrEnroll) {
		t.Errorf("unknown vendor: %v, want ErrEnroll", err)
	}
	// Without vendor A's intermediate its EK certificates no longer chain.
	if err := os.Remove(filepath.Join(dir, "vendor-a-issuer.der")); err != nil {
		t.Fatal(err)
	}
	iss, err = LoadEKIssuers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyEK(ekCert(t, a1, ifx), iss, time.Now()); !errors.Is(err, ErrEnroll) {
		t.Errorf("vendor A without its intermediate: %v, want ErrEnroll", err)
	}
	// One file works as before: the roots and intermediates in it.
	f := filepath.Join(t.TempDir(), "ek-ca.pem")
	writeFiles(t, filepath.Dir(f), map[string][]byte{"ek-ca.pem": pemOf(b1.cert, b.cert, b2.cert)})
	if iss, err = LoadEKIssuers(f); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyEK(ekCert(t, b2, ifx), iss, time.Now()); err != nil {
		t.Errorf("one file: %v", err)
	}
}

// TestEKIssuersRefused: stores that cannot be used are refused with the
// file named.
func TestEKIssuersRefused(t *testing.T) {
	root := newCA(t, "Root", nil)
	inter := newCA(t, "Issuer", root)
	for name, files := range map[string]map[string][]byte{
		"empty":              {},
		"only intermediates": {"issuer.pem": pemOf(inter.cert)},
		"not a certificate":  {"root.pem": pemOf(root.cert), "broken.crt": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")},
		"der garbage":        {"root.pem": pemOf(root.cert), "x.der": []byte{0x30, 0x03, 0x02, 0x01, 0x01}},
		"pem, no cert":       {"root.pem": pemOf(root.cert), "crl.pem": pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}})},
	} {
		dir := t.TempDir()
		writeFiles(t, dir, files)
		if _, err := LoadEKIssuers(dir); err == nil {
			t.Errorf("%s: loaded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := LoadEKIssuers(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent: %v", err)
	}
}

// TestParseEKCertificateStored: the forms a TPM's NV index holds an EK
// certificate in all parse to the certificate: DER, padded, framed by the
// TCG stored-certificate header, with the TCG_FULL_CERT tag, framed and
// padded. Bytes that are no certificate do not.
func TestParseEKCertificateStored(t *testing.T) {
	root := newCA(t, "Root", nil)
	der := ekCert(t, root, TPMIdentity{Manufacturer: "id:4E544300", Model: "NPCT75x", Version: "id:00070002"})
	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint16([]byte{0x10, 0x01, 0x00}, uint16(len(body))), body...)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	for name, b := range map[string][]byte{
		"der":              der,
		"padded":           append(bytes.Clone(der), make([]byte, 300)...),
		"framed":           frame(der),
		"framed, full tag": frame(append([]byte{0x10, 0x02}, der...)),
		"framed, padded":   append(frame(der), 0xff, 0xff, 0xff),
	} {
		c, err := VerifyEKCertificate(b, pool, nil, time.Now())
		if err != nil || !bytes.Equal(c.Raw, der) {
			t.Errorf("%s: %v", name, err)
		}
		if id := tpmIdentity(c); id.Vendor() != "NTC" {
			t.Errorf("%s: %+v", name, id)
		}
	}
	for name, b := range map[string][]byte{
		"cut":           der[:len(der)-1],
		"frame beyond":  frame(der)[:len(der)],
		"3-byte prefix": der[:3],
	} {
		if _, err := VerifyEKCertificate(b, pool, nil, time.Now()); !errors.Is(err, ErrEnroll) {
			t.Errorf("%s: %v, want ErrEnroll", name, err)
		}
	}
}

// TestEKIdentitySwtpm reads the EK certificate that swtpm_localca issued
// from a swtpm's NV through internal/tpm, verifies it against a directory
// holding the local CA's root and issuer, and compares the TPM identity
// with what openssl prints of the certificate's subjectAltName.
func TestEKIdentitySwtpm(t *testing.T) {
	openssl := testutil.RequireTool(t, "openssl")
	e := tpmtest.ManufactureEKSwtpm(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{StateDir: e.StateDir})
	d := tpmtest.Open(t, sw.Spec())
	der, err := d.EKCertificate(tpm.EKCertIndexRSA2048)
	if err != nil || der == nil {
		t.Fatalf("ek certificate: %v", err)
	}
	store := t.TempDir()
	for _, f := range []string{e.RootCA, e.IssuerCA} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFiles(t, store, map[string][]byte{filepath.Base(f): b})
	}
	iss, err := LoadEKIssuers(store)
	if err != nil {
		t.Fatal(err)
	}
	info, err := VerifyEK(der, iss, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "ek.der")
	writeFiles(t, filepath.Dir(certFile), map[string][]byte{"ek.der": der})
	out, err := exec.CommandContext(t.Context(), openssl, "x509", "-inform", "DER", "-in", certFile, "-noout", "-ext", "subjectAltName").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	want := TPMIdentity{}
	for oid, field := range map[string]*string{"2.23.133.2.1": &want.Manufacturer, "2.23.133.2.2": &want.Model, "2.23.133.2.3": &want.Version} {
		m := regexp.MustCompile(regexp.QuoteMeta(oid) + `\s*=\s*([^/,\n+]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("openssl shows no %s:\n%s", oid, out)
		}
		*field = string(m[1])
	}
	if info.TPM != want {
		t.Errorf("tpm identity %+v; openssl shows %+v", info.TPM, want)
	}
	t.Logf("swtpm EK: %+v (vendor %q)", info.TPM, info.TPM.Vendor())
}

// FuzzEKCertificate: EK certificate bytes come from the agent's TPM NV;
// parsing them and reading the TPM identity must not panic.
func FuzzEKCertificate(f *testing.F) {
	root := newCA(f, "Root", nil)
	der := ekCert(f, root, TPMIdentity{Manufacturer: "id:49465800", Model: "SLB9670", Version: "id:00070055"})
	f.Add(der)
	f.Add(append(binary.BigEndian.AppendUint16([]byte{0x10, 0x01, 0x00}, uint16(len(der)+2)), append([]byte{0x10, 0x02}, der...)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseEKCertificate(b)
		if err == nil {
			_ = tpmIdentity(c).Vendor()
		}
	})
}
