package tpm

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// seeds reads every file in testdata matching pattern.
func seeds(f *testing.F, pattern string) [][]byte {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seeds for %s: %v", pattern, err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzParseAKBlob: the stored AK file is read back from disk, so it is
// untrusted input. Parsing never panics; whatever parses re-marshals to the
// same bytes.
func FuzzParseAKBlob(f *testing.F) {
	for _, s := range seeds(f, "ak-*.blob") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, pub, err := parseAKBlob(data)
		if err != nil {
			return
		}
		if pub == nil {
			t.Fatal("nil public without an error")
		}
		if !bytes.Equal(b.marshal(), data) {
			t.Fatal("parsed blob does not re-marshal to its input")
		}
		for _, alg := range []AKAlgorithm{AKECCP256, AKRSA2048} {
			tmpl, err := akTemplate(alg)
			if err != nil {
				t.Fatal(err)
			}
			sameTemplate(*pub, tmpl) // must not panic
		}
	})
}

// FuzzDERLength: EK certificate NV contents come from the TPM's NV, written
// by whoever provisioned it.
func FuzzDERLength(f *testing.F) {
	for _, s := range seeds(f, "*.der") {
		f.Add(s)
		f.Add(append(bytes.Clone(s), 0, 0, 0))
	}
	f.Add([]byte{0x30, 0x80})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := derLength(data)
		if err != nil {
			return
		}
		if n < 2 || n > len(data) {
			t.Fatalf("derLength = %d for %d bytes", n, len(data))
		}
	})
}

// FuzzReadFrame: the swtpm socket's responses are read by their size field.
func FuzzReadFrame(f *testing.F) {
	for _, s := range seeds(f, "rsp-*.bin") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rsp, err := readFrame(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(rsp) < headerSize || int(binary.BigEndian.Uint32(rsp[2:6])) != len(rsp) || !bytes.HasPrefix(data, rsp) {
			t.Fatalf("frame of %d bytes from %d bytes of input", len(rsp), len(data))
		}
	})
}
