package cms

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// TrustStore stands in for the kernel keyring named by keyring_id: the set
// of asymmetric keys a signer may be found in. It is immutable after
// construction and safe for concurrent use.
type TrustStore struct {
	keys     []trustedKey
	warnings []string
	id       [sha256.Size]byte // Identity, computed once by NewTrustStore
}

type trustedKey struct {
	cert *x509.Certificate
	ids  certIDs
}

// NewTrustStore returns a store holding the certificates' keys. A
// certificate whose identifiers cannot be read is left out (the kernel
// would refuse to add it as a key); nil entries are ignored.
func NewTrustStore(certs ...*x509.Certificate) *TrustStore {
	ts := &TrustStore{}
	for _, c := range certs {
		if c == nil {
			continue
		}
		ids, err := idsOf(c)
		if err != nil {
			continue
		}
		ts.keys = append(ts.keys, trustedKey{cert: c, ids: ids})
	}
	ts.id = identityOf(ts.keys)
	return ts
}

// Identity returns a digest of everything in the store a verification
// depends on: the DER of each trusted certificate, in order (the order
// decides which key a lookup finds first). Two stores with the same
// identity give every signature the same Result; a store that differs in
// any certificate, or in their order, has another identity. A nil store has
// the identity of an empty one.
func (t *TrustStore) Identity() [sha256.Size]byte {
	if t == nil || t.id == ([sha256.Size]byte{}) {
		var keys []trustedKey
		if t != nil {
			keys = t.keys
		}
		return identityOf(keys)
	}
	return t.id
}

// identityOf hashes a domain-separation label, the number of keys, and each
// key's certificate DER prefixed by its length.
func identityOf(keys []trustedKey) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte("bpfattest trust store v1\x00"))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(keys)))
	h.Write(n[:])
	for _, k := range keys {
		binary.BigEndian.PutUint64(n[:], uint64(len(k.cert.Raw)))
		h.Write(n[:])
		h.Write(k.cert.Raw)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// LoadTrust reads certificates from files and directories. A file may be
// DER (one or several concatenated certificates) or PEM (any number of
// CERTIFICATE blocks). A directory contributes its regular files ending in
// .pem, .crt, .cer or .der (not recursively, in name order). Any file that
// holds no certificate, or one that does not parse, is an error: a trust
// store is never silently smaller than asked for. The one exception is a
// private key in a directory (a signing key kept beside its certificate):
// it is skipped, and Warnings says so, since it was never a trust anchor;
// a private key named as a file is still an error. A file that holds
// certificates and a private key loads its certificates, with a warning.
func LoadTrust(paths ...string) (*TrustStore, error) {
	var certs []*x509.Certificate
	var warnings []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("trust/load: %w", err)
		}
		files := []string{p}
		if st.IsDir() {
			files, err = certFilesIn(p)
			if err != nil {
				return nil, err
			}
		}
		for _, f := range files {
			cs, hasKey, err := readCertFile(f)
			switch {
			case err != nil && hasKey && st.IsDir():
				warnings = append(warnings, fmt.Sprintf("%s: a private key, not a certificate: skipped (keep signing keys out of trust directories)", f))
				continue
			case err != nil && hasKey:
				return nil, fmt.Errorf("%w (a private key: trust the signer's certificate instead)", err)
			case err != nil:
				return nil, err
			case hasKey:
				warnings = append(warnings, fmt.Sprintf("%s: holds a private key besides its certificates (keep signing keys out of trust stores)", f))
			}
			certs = append(certs, cs...)
		}
	}
	ts := NewTrustStore(certs...)
	ts.warnings = warnings
	if len(ts.keys) != len(certs) {
		return nil, fmt.Errorf("trust/load: %d of %d certificates have unreadable identifiers", len(certs)-len(ts.keys), len(certs))
	}
	return ts, nil
}

func certFilesIn(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trust/load: %w", err)
	}
	var out []string
	for _, e := range ents {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.Type().IsRegular() || !slices.Contains([]string{".pem", ".crt", ".cer", ".der"}, ext) {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out, nil
}

// MaxTrustFileSize bounds one trusted-certificate file (DER, or a PEM
// bundle), in bytes.
const MaxTrustFileSize = 4 << 20

// readCertFile reads the certificates of one file, and whether it holds a
// private key (a PEM block of a PRIVATE KEY type, or DER that parses as
// one).
func readCertFile(path string) (_ []*x509.Certificate, hasKey bool, _ error) {
	b, err := boundedfile.ReadFile(path, MaxTrustFileSize)
	if err != nil {
		return nil, false, fmt.Errorf("trust/load: %w", err)
	}
	var certs []*x509.Certificate
	if bytes.Contains(b, []byte("-----BEGIN")) {
		rest := b
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
				hasKey = true
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, hasKey, fmt.Errorf("trust/load %s: %w", path, err)
			}
			certs = append(certs, c)
		}
	} else {
		certs, err = x509.ParseCertificates(b)
		if err != nil {
			return nil, isDERKey(b), fmt.Errorf("trust/load %s: %w", path, err)
		}
	}
	if len(certs) == 0 {
		return nil, hasKey, fmt.Errorf("trust/load %s: no certificate", path)
	}
	return certs, hasKey, nil
}

// isDERKey reports whether b is a DER private key (PKCS #8, PKCS #1 or
// SEC 1).
func isDERKey(b []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(b)
	return err == nil
}

// Warnings lists what LoadTrust skipped or found out of place (private
// keys in the trust store's files and directories), for the caller to
// report.
func (t *TrustStore) Warnings() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.warnings)
}

// Certificates returns the trusted certificates in insertion order.
func (t *TrustStore) Certificates() []*x509.Certificate {
	if t == nil {
		return nil
	}
	out := make([]*x509.Certificate, len(t.keys))
	for i, k := range t.keys {
		out[i] = k.cert
	}
	return out
}

// find mirrors find_asymmetric_key with an exact ("ex:") match: the key is
// looked up by id0 if given, else by id1, against every identifier of each
// key; when both are given the key's subjectKeyIdentifier must also equal
// id1.
func (t *TrustStore) find(id0, id1 []byte) (trustedKey, bool) {
	if t == nil {
		return trustedKey{}, false
	}
	lookup := id0
	if lookup == nil {
		lookup = id1
	}
	if lookup == nil {
		return trustedKey{}, false
	}
	for _, k := range t.keys {
		if !bytes.Equal(k.ids.id, lookup) && (k.ids.skid == nil || !bytes.Equal(k.ids.skid, lookup)) {
			continue
		}
		if id0 != nil && id1 != nil && (k.ids.skid == nil || !bytes.Equal(k.ids.skid, id1)) {
			continue
		}
		return k, true
	}
	return trustedKey{}, false
}
