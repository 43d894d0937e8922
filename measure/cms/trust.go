package cms

import (
	"bytes"
	"crypto/x509"
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
	keys []trustedKey
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
	return ts
}

// LoadTrust reads certificates from files and directories. A file may be
// DER (one or several concatenated certificates) or PEM (any number of
// CERTIFICATE blocks). A directory contributes its regular files ending in
// .pem, .crt, .cer or .der (not recursively, in name order). Any file that
// holds no certificate, or one that does not parse, is an error: a trust
// store is never silently smaller than asked for.
func LoadTrust(paths ...string) (*TrustStore, error) {
	var certs []*x509.Certificate
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
			cs, err := readCertFile(f)
			if err != nil {
				return nil, err
			}
			certs = append(certs, cs...)
		}
	}
	ts := NewTrustStore(certs...)
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

func readCertFile(path string) ([]*x509.Certificate, error) {
	b, err := boundedfile.ReadFile(path, MaxTrustFileSize)
	if err != nil {
		return nil, fmt.Errorf("trust/load: %w", err)
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
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust/load %s: %w", path, err)
			}
			certs = append(certs, c)
		}
	} else {
		certs, err = x509.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("trust/load %s: %w", path, err)
		}
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("trust/load %s: no certificate", path)
	}
	return certs, nil
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
