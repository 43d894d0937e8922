package tpm

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/bpfattest/bpfattest/internal/atomicfile"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// AKAlgorithm selects the attestation key's type.
type AKAlgorithm int

const (
	// AKECCP256 is an ECC NIST P-256 key signing with ECDSA-SHA256: the
	// default, and fast on every TPM.
	AKECCP256 AKAlgorithm = iota
	// AKRSA2048 is an RSA-2048 key signing with RSASSA-PKCS1-v1_5-SHA256,
	// for verifiers that accept only RSA. Creating it takes much longer.
	AKRSA2048
)

func (a AKAlgorithm) String() string {
	switch a {
	case AKECCP256:
		return "ecc-p256"
	case AKRSA2048:
		return "rsa-2048"
	default:
		return fmt.Sprintf("AKAlgorithm(%d)", int(a))
	}
}

// AKOptions configures LoadOrCreateAK. The zero value is an ECC P-256 AK
// under DefaultParentHandle that is not stored.
type AKOptions struct {
	// Algorithm of the key. Default AKECCP256.
	Algorithm AKAlgorithm
	// StateDir is the directory that keeps the AK blob, one file per
	// algorithm (see AKFileName). It is created with mode 0700 when absent.
	// Empty means the AK is not stored: every call creates a new one, which
	// verifiers would have to enrol again.
	StateDir string
	// ParentHandle is the persistent handle of the AK's parent storage key
	// in the endorsement hierarchy, created there when absent. Zero means
	// DefaultParentHandle.
	ParentHandle uint32
	// ReplaceStale makes LoadOrCreateAK create and store a new AK when the
	// stored one does not belong to this TPM, instead of returning
	// ErrAKStale. The safe default (false) keeps an operator in the loop: a
	// new AK is a new identity that verifiers must enrol.
	ReplaceStale bool
}

// AKFileName returns the file name of the AK blob for an algorithm inside
// AKOptions.StateDir.
func AKFileName(alg AKAlgorithm) string { return "ak-" + alg.String() + ".blob" }

// AK is an attestation key: its public area and the wrapped private blob.
// It is not loaded in the TPM between uses; Quote loads and flushes it.
type AK struct {
	alg     AKAlgorithm
	blob    akBlob
	name    []byte
	pub     crypto.PublicKey
	created bool
}

// Algorithm returns the key's algorithm.
func (a *AK) Algorithm() AKAlgorithm { return a.alg }

// PublicArea returns the AK's TPMT_PUBLIC bytes (TPM 2.0 Part 2 §12.2.4),
// the form verifiers and tpm2-tools take.
func (a *AK) PublicArea() []byte { return bytes.Clone(a.blob.public) }

// Public returns the AK's public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (a *AK) Public() crypto.PublicKey { return a.pub }

// Name returns the AK's TPM name (nameAlg ‖ H(TPMT_PUBLIC)), which a quote
// carries as its qualifiedSigner's basis.
func (a *AK) Name() []byte { return bytes.Clone(a.name) }

// Created reports whether the call that returned this AK created it (rather
// than loading a stored one).
func (a *AK) Created() bool { return a.created }

// LoadOrCreateAK returns the attestation key stored in opts.StateDir, after
// checking that this TPM accepts it, or creates one under the parent key
// (creating that too when absent) and stores it atomically. A stored AK
// made under a different parent (a different TPM, or a simulator with new
// seeds) is ErrAKStale unless opts.ReplaceStale is set. Creating keys needs
// empty endorsement and owner auth.
func (d *Device) LoadOrCreateAK(opts AKOptions) (*AK, error) {
	parentHandle := opts.ParentHandle
	if parentHandle == 0 {
		parentHandle = DefaultParentHandle
	}
	tmpl, err := akTemplate(opts.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("tpm/ak: %w", err)
	}
	var path string
	if opts.StateDir != "" {
		if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("tpm/ak: %w", err)
		}
		path = filepath.Join(opts.StateDir, AKFileName(opts.Algorithm))
	}

	var ak *AK
	err = d.do(func(t transport.TPM) error {
		parentName, err := ensureParent(t, parentHandle)
		if err != nil {
			return err
		}
		if path != "" {
			ak, err = loadStoredAK(t, path, opts.Algorithm, tmpl, parentHandle, parentName)
			switch {
			case err == nil && ak != nil:
				return nil
			case err != nil && !(opts.ReplaceStale && errors.Is(err, ErrAKStale)):
				return err
			}
		}
		ak, err = createAK(t, opts.Algorithm, tmpl, parentHandle, parentName)
		if err != nil {
			return err
		}
		if path != "" {
			return atomicfile.Write(path, ak.blob.marshal(), 0o600)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm/ak %v: %w", opts.Algorithm, err)
	}
	return ak, nil
}

// maxAKBlobSize bounds the stored AK blob: a public area, a private blob
// and a parent name, a few hundred bytes each.
const maxAKBlobSize = 64 << 10

// loadStoredAK reads the blob at path. A missing file is (nil, nil).
func loadStoredAK(t transport.TPM, path string, alg AKAlgorithm, tmpl tpm2.TPMTPublic, parentHandle uint32, parentName tpm2.TPM2BName) (*AK, error) {
	data, err := boundedfile.ReadFile(path, maxAKBlobSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, boundedfile.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrBadAKBlob, err)
	}
	if err != nil {
		return nil, err
	}
	blob, pub, err := parseAKBlob(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !sameTemplate(*pub, tmpl) {
		return nil, fmt.Errorf("%s: %w: not a %v attestation key", path, ErrBadAKBlob, alg)
	}
	if blob.parentHandle != parentHandle || !bytes.Equal(blob.parentName, parentName.Buffer) {
		return nil, fmt.Errorf("%s: %w: made under parent %#x %x, tpm has %#x %x",
			path, ErrAKStale, blob.parentHandle, blob.parentName, parentHandle, parentName.Buffer)
	}
	ak, err := newAK(alg, blob, pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Prove the TPM takes it: the private part's integrity is checked on load.
	h, _, err := loadAK(t, ak)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrAKStale, err)
	}
	return ak, flush(t, h)
}

// createAK creates a new AK under the parent (TPM2_Create).
func createAK(t transport.TPM, alg AKAlgorithm, tmpl tpm2.TPMTPublic, parentHandle uint32, parentName tpm2.TPM2BName) (*AK, error) {
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(parentHandle), Name: parentName, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	blob := akBlob{
		parentHandle: parentHandle,
		parentName:   bytes.Clone(parentName.Buffer),
		public:       tpm2.Marshal(pub),
		private:      bytes.Clone(rsp.OutPrivate.Buffer),
	}
	ak, err := newAK(alg, blob, pub)
	if err != nil {
		return nil, err
	}
	ak.created = true
	return ak, nil
}

func newAK(alg AKAlgorithm, blob akBlob, pub *tpm2.TPMTPublic) (*AK, error) {
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("ak public key: %w", err)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("ak name: %w", err)
	}
	return &AK{alg: alg, blob: blob, name: name.Buffer, pub: key}, nil
}

// loadAK loads the AK under its parent (TPM2_Load). The caller flushes
// the returned handle.
func loadAK(t transport.TPM, ak *AK) (tpm2.TPMHandle, tpm2.TPM2BName, error) {
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{
			Handle: tpm2.TPMHandle(ak.blob.parentHandle),
			Name:   tpm2.TPM2BName{Buffer: ak.blob.parentName},
			Auth:   tpm2.PasswordAuth(nil),
		},
		InPrivate: tpm2.TPM2BPrivate{Buffer: ak.blob.private},
		InPublic:  tpm2.BytesAs2B[tpm2.TPMTPublic](ak.blob.public),
	}.Execute(t)
	if err != nil {
		return 0, tpm2.TPM2BName{}, fmt.Errorf("load ak: %w", err)
	}
	return rsp.ObjectHandle, rsp.Name, nil
}
