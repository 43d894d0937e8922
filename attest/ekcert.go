package attest

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	goattest "github.com/google/go-attestation/attest"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// Limits on an EK issuer store (LoadEKIssuers).
const (
	// MaxEKIssuerFileSize bounds one certificate file.
	MaxEKIssuerFileSize = 1 << 20
	// MaxEKIssuerFiles bounds the certificate files of a directory
	// (Keylime's tpm_cert_store holds about a hundred).
	MaxEKIssuerFiles = 4096
)

// The TPM attributes of an EK certificate's subjectAltName directoryName
// (TCG EK Credential Profile for TPM Family 2.0, §3.2.9 "Subject
// Alternative Name"; attribute OIDs from the TCG OID registry).
var (
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer  = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel         = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion       = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	errNoRootInIssuers  = errors.New("no self-signed root certificate")
	errNoCertsInIssuers = errors.New("no certificate")
)

// ParseEKCertificate parses an EK certificate as a TPM's NV index holds it:
// DER, or DER framed by the TCG stored-certificate header
// (TCG_PCCLIENT_STORED_CERT: tag 0x1001, type 0, 16-bit size, then the
// certificate, after a TCG_FULL_CERT tag 0x1002 on some parts), possibly
// followed by padding. The parsing is go-attestation's
// ParseEKCertificate, which also tolerates bytes after the certificate.
func ParseEKCertificate(b []byte) (*x509.Certificate, error) {
	// go-attestation removes the stored-certificate header but not the
	// TCG_FULL_CERT tag after it.
	if len(b) >= 7 && bytes.HasPrefix(b, []byte{0x10, 0x01, 0x00}) && binary.BigEndian.Uint16(b[5:]) == 0x1002 {
		if n := int(binary.BigEndian.Uint16(b[3:])); n >= 2 && 5+n <= len(b) {
			b = b[7 : 5+n]
		}
	}
	c, err := goattest.ParseEKCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("ek certificate: %w", err)
	}
	return c, nil
}

// EKIssuers are the certificates an EK certificate may chain to: the TPM
// vendors' roots (self-signed) and intermediates.
type EKIssuers struct {
	Roots         *x509.CertPool
	Intermediates *x509.CertPool
	// Certificates counts the certificates loaded.
	Certificates int
	// Ignored lists the directory entries that are not certificate files
	// (by name: see LoadEKIssuers).
	Ignored []string
}

// LoadEKIssuers reads EK certificate issuers from path: one file, or a
// directory of files, the layout operators keep for Keylime's
// tpm_cert_store (one or more vendor roots and intermediates per file).
// A file holds PEM CERTIFICATE blocks or one DER certificate. In a
// directory, only regular files (or links to them) named *.pem, *.crt,
// *.cer or *.der are read, not subdirectories or hidden files; the others
// are listed in Ignored. Self-signed certificates become roots, the others
// intermediates. A certificate file that does not parse is an error naming
// it, and so is a store without a root.
func LoadEKIssuers(path string) (*EKIssuers, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("attest/ek issuers: %w", err)
	}
	iss := &EKIssuers{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool()}
	files := []string{path}
	if fi.IsDir() {
		if files, iss.Ignored, err = certFiles(path); err != nil {
			return nil, fmt.Errorf("attest/ek issuers: %w", err)
		}
	}
	roots := 0
	for _, f := range files {
		b, err := boundedfile.ReadFile(f, MaxEKIssuerFileSize)
		if err != nil {
			return nil, fmt.Errorf("attest/ek issuers: %w", err)
		}
		certs, err := parseCertFile(b)
		if err != nil {
			return nil, fmt.Errorf("attest/ek issuers: %s: %w", f, err)
		}
		for _, c := range certs {
			if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
				iss.Roots.AddCert(c)
				roots++
			} else {
				iss.Intermediates.AddCert(c)
			}
			iss.Certificates++
		}
	}
	if roots == 0 {
		return nil, fmt.Errorf("attest/ek issuers: %s: %w", path, errNoRootInIssuers)
	}
	return iss, nil
}

// certFiles lists the certificate files of a directory, sorted, and the
// entries it ignores.
func certFiles(dir string) (files, ignored []string, _ error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		p := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") || !slices.Contains([]string{".pem", ".crt", ".cer", ".der"}, ext) {
			ignored = append(ignored, name)
			continue
		}
		fi, err := os.Stat(p) // follows a link
		if err != nil {
			return nil, nil, err
		}
		if !fi.Mode().IsRegular() {
			ignored = append(ignored, name)
			continue
		}
		if len(files) == MaxEKIssuerFiles {
			return nil, nil, fmt.Errorf("%s: more than %d certificate files", dir, MaxEKIssuerFiles)
		}
		files = append(files, p)
	}
	return files, ignored, nil
}

// parseCertFile reads the PEM CERTIFICATE blocks of b, or b as one DER
// certificate when it holds no PEM block.
func parseCertFile(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest, sawPEM := b, false
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		sawPEM = true
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if !sawPEM {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errNoCertsInIssuers
	}
	return certs, nil
}

// EKInfo is an EK certificate that chains to the verifier's issuers, and
// the TPM it names.
type EKInfo struct {
	Certificate *x509.Certificate
	// TPM is the TPM identity the certificate states, zero when it states
	// none.
	TPM TPMIdentity
}

// TPMIdentity is the TPM an EK certificate names in its subjectAltName
// directoryName (TCG EK Credential Profile §3.2.9): the values as the
// certificate spells them, e.g. Manufacturer "id:49465800", Model
// "SLB9670", Version "id:00070055".
type TPMIdentity struct {
	// Manufacturer is tcg-at-tpmManufacturer (2.23.133.2.1): "id:" and
	// the TCG vendor ID in hex.
	Manufacturer string
	// Model is tcg-at-tpmModel (2.23.133.2.2).
	Model string
	// Version is tcg-at-tpmVersion (2.23.133.2.3): the TPM's firmware
	// version, "id:" and hex.
	Version string
}

// Vendor returns the manufacturer's TCG vendor ID as text ("IFX", "NTC",
// "STM", "MSFT"), or "" when Manufacturer is not "id:" and four
// printable bytes in hex (trailing NULs dropped).
func (t TPMIdentity) Vendor() string {
	h, ok := strings.CutPrefix(t.Manufacturer, "id:")
	if !ok {
		return ""
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 4 {
		return ""
	}
	b = bytes.TrimRight(b, "\x00")
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return string(b)
}

// VerifyEK parses an EK certificate as the TPM stores it
// (ParseEKCertificate), checks that it chains to iss at time now (as
// VerifyEKCertificate does) and reads the TPM identity it states.
func VerifyEK(b []byte, iss *EKIssuers, now time.Time) (*EKInfo, error) {
	if iss == nil {
		return nil, fmt.Errorf("attest/enroll: %w: no ek issuers", ErrEnroll)
	}
	c, err := VerifyEKCertificate(b, iss.Roots, iss.Intermediates, now)
	if err != nil {
		return nil, err
	}
	return &EKInfo{Certificate: c, TPM: tpmIdentity(c)}, nil
}

// tpmIdentity reads the TPM attributes from a certificate's
// subjectAltName directoryName entries. A subjectAltName that does not
// parse gives no identity: the certificate's issuer signed those bytes,
// so they are the issuer's to get right, and the identity is reported,
// not relied on.
func tpmIdentity(c *x509.Certificate) TPMIdentity {
	var id TPMIdentity
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) > 0 {
			return TPMIdentity{}
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 4 || !n.IsCompound {
				continue // not a directoryName
			}
			var rdns pkix.RDNSequence
			if rest, err := asn1.Unmarshal(n.Bytes, &rdns); err != nil || len(rest) > 0 {
				continue
			}
			for _, rdn := range rdns {
				for _, atv := range rdn {
					s, ok := atv.Value.(string)
					if !ok {
						continue
					}
					switch {
					case atv.Type.Equal(oidTPMManufacturer):
						id.Manufacturer = s
					case atv.Type.Equal(oidTPMModel):
						id.Model = s
					case atv.Type.Equal(oidTPMVersion):
						id.Version = s
					}
				}
			}
		}
	}
	return id
}
