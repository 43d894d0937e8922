package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// TLSOptions configures the remote service's TLS.
type TLSOptions struct {
	// CertFile and KeyFile hold the server's certificate chain and key (PEM).
	CertFile, KeyFile string
	// ClientCAFile, if set, requires client certificates that chain to one
	// of its certificates (PEM).
	ClientCAFile string
	// NextProtos are the ALPN protocols offered; nil means gRPC's "h2".
	// An HTTP server wants "h2" and "http/1.1".
	NextProtos []string
	// ClientAllow, if set, requires client certificates whose leaf's
	// SHA-256 fingerprint (hex, colons allowed) is listed. With
	// ClientCAFile also set, both must hold.
	ClientAllow []string
}

// MaxTLSFileSize bounds each of the TLS files (certificate chain, key,
// client CA bundle): PEM text of a few certificates.
const MaxTLSFileSize = 1 << 20

// ServerTLS returns the remote service's TLS configuration: TLS 1.3 only,
// with client authentication as configured, from the files as they are
// now. A TLSReloader gives the same configuration, reloadable.
func ServerTLS(opts TLSOptions) (*tls.Config, error) {
	r, err := NewTLSReloader(opts, nil)
	if err != nil {
		return nil, err
	}
	return r.Config(), nil
}

// TLSReloader holds the remote service's TLS material and replaces it when
// its files change, without a restart: the server certificate and key, the
// client CA pool (the allowlist comes from the configuration and stays). Each new handshake uses the material
// loaded last (tls.Config.GetConfigForClient); connections already open
// keep theirs. A reload that fails (a missing file, a key that does not
// match the certificate, a CA file without certificates) changes nothing:
// the agent keeps serving with the material it has, and says why.
type TLSReloader struct {
	opts   TLSOptions
	logger *slog.Logger

	mu    sync.Mutex
	cur   *tls.Config // guarded by mu; the per-handshake configuration
	stamp []fileStamp // guarded by mu; the files as cur was read from them
}

// fileStamp is what Changed compares: a file's identity, size and time. A
// Kubernetes Secret volume swaps a symbolic link; os.Stat follows it.
type fileStamp struct {
	path  string
	size  int64
	mtime time.Time
	ino   uint64
	err   bool
}

// NewTLSReloader loads the TLS files once; any error is returned (the
// daemon does not start without valid material). logger may be nil.
func NewTLSReloader(opts TLSOptions, logger *slog.Logger) (*TLSReloader, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tls/config: server certificate and key are both required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &TLSReloader{opts: opts, logger: logger}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Config returns the configuration to serve with: it hands every handshake
// the material loaded last.
func (r *TLSReloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.cur, nil
		},
	}
}

func (r *TLSReloader) files() []string {
	f := []string{r.opts.CertFile, r.opts.KeyFile}
	if r.opts.ClientCAFile != "" {
		f = append(f, r.opts.ClientCAFile)
	}
	return f
}

// Reload reads the files now and, if they make a valid configuration,
// serves it from the next handshake on.
func (r *TLSReloader) Reload() error {
	stamps := stampFiles(r.files())
	cfg, err := loadServerTLS(r.opts)
	if err != nil {
		r.mu.Lock()
		r.stamp = stamps // do not retry the same broken files every poll
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	r.cur, r.stamp = cfg, stamps
	r.mu.Unlock()
	return nil
}

// Changed reports whether any file differs from when it was last read.
func (r *TLSReloader) Changed() bool {
	now := stampFiles(r.files())
	r.mu.Lock()
	defer r.mu.Unlock()
	return !slices.Equal(now, r.stamp)
}

// Watch reloads when a file changes (polled every interval) or when
// reload receives, until ctx is done. Failed reloads are logged, and the
// material in use stays.
func (r *TLSReloader) Watch(ctx context.Context, interval time.Duration, reload <-chan struct{}) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		why := "signal"
		select {
		case <-ctx.Done():
			return
		case <-reload:
		case <-tick:
			if !r.Changed() {
				continue
			}
			why = "files changed"
		}
		if err := r.Reload(); err != nil {
			r.logger.Error("tls reload failed; serving with the previous certificate", "why", why, "err", err)
			continue
		}
		r.logger.Info("tls reloaded", "why", why, "certificate", r.leafSummary())
	}
}

func (r *TLSReloader) leafSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cur.Certificates) == 0 || r.cur.Certificates[0].Leaf == nil {
		return ""
	}
	l := r.cur.Certificates[0].Leaf
	return fmt.Sprintf("%s serial %s until %s", l.Subject, l.SerialNumber, l.NotAfter.UTC().Format(time.RFC3339))
}

func stampFiles(paths []string) []fileStamp {
	out := make([]fileStamp, len(paths))
	for i, p := range paths {
		out[i] = fileStamp{path: p}
		fi, err := os.Stat(p)
		if err != nil {
			out[i].err = true
			continue
		}
		out[i].size, out[i].mtime, out[i].ino = fi.Size(), fi.ModTime(), inode(fi)
	}
	return out
}

// loadServerTLS reads the files into one handshake's configuration.
func loadServerTLS(opts TLSOptions) (*tls.Config, error) {
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
		// gRPC requires ALPN "h2"; the configuration a handshake gets
		// from GetConfigForClient replaces the one grpc-go prepared.
		NextProtos: []string{"h2"},
		// A resumed session would skip the client certificate check
		// against a reloaded CA pool.
		SessionTicketsDisabled: true,
	}
	if opts.NextProtos != nil {
		cfg.NextProtos = slices.Clone(opts.NextProtos)
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
