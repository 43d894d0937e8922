package service

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// TLSOptions configures the remote service's TLS.
type TLSOptions struct {
	// CertFile and KeyFile hold the server's certificate chain and key (PEM).
	CertFile, KeyFile string
	// ClientCAFile, if set, requires client certificates that chain to one
	// of its certificates (PEM).
	ClientCAFile string
	// ClientAllow, if set, requires client certificates whose leaf's
	// SHA-256 fingerprint (hex, colons allowed) is listed. With
	// ClientCAFile also set, both must hold.
	ClientAllow []string
}

// MaxTLSFileSize bounds each of the TLS files (certificate chain, key,
// client CA bundle): PEM text of a few certificates.
const MaxTLSFileSize = 1 << 20

// ServerTLS returns the remote service's TLS configuration: TLS 1.3 only,
// with client authentication as configured.
func ServerTLS(opts TLSOptions) (*tls.Config, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tls/config: server certificate and key are both required")
	}
	certPEM, err := boundedfile.ReadFile(opts.CertFile, MaxTLSFileSize)
	if err != nil {
		return nil, fmt.Errorf("tls/config: certificate: %w", err)
	}
	keyPEM, err := boundedfile.ReadFile(opts.KeyFile, MaxTLSFileSize)
	if err != nil {
		return nil, fmt.Errorf("tls/config: key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls/config: %s and %s: %w", opts.CertFile, opts.KeyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	if opts.ClientCAFile != "" {
		pool, err := certPool(opts.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls/config: client ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if len(opts.ClientAllow) > 0 {
		allow := make([][]byte, 0, len(opts.ClientAllow))
		for _, s := range opts.ClientAllow {
			fp, err := ParseFingerprint(s)
			if err != nil {
				return nil, fmt.Errorf("tls/config: %w", err)
			}
			allow = append(allow, fp)
		}
		if cfg.ClientAuth == tls.NoClientCert {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return checkAllowed(raw, allow)
		}
	}
	return cfg, nil
}

// errNotAllowed is returned from the TLS handshake for a client certificate
// that is not on the allowlist.
var errNotAllowed = errors.New("client certificate not on the allowlist")

func checkAllowed(raw [][]byte, allow [][]byte) error {
	if len(raw) == 0 {
		return errNotAllowed
	}
	fp := sha256.Sum256(raw[0])
	for _, a := range allow {
		if subtle.ConstantTimeCompare(fp[:], a) == 1 {
			return nil
		}
	}
	return errNotAllowed
}

// ParseFingerprint parses a SHA-256 certificate fingerprint: 64 hex digits,
// optionally in colon-separated pairs and prefixed "sha256:".
func ParseFingerprint(s string) ([]byte, error) {
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	h = strings.ReplaceAll(h, ":", "")
	fp, err := hex.DecodeString(h)
	if err != nil || len(fp) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want %d hex-encoded bytes", s, sha256.Size)
	}
	return fp, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, in lowercase hex: the
// form ClientAllow takes.
func Fingerprint(der []byte) string {
	fp := sha256.Sum256(der)
	return hex.EncodeToString(fp[:])
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := boundedfile.ReadFile(file, MaxTLSFileSize)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}
