package tpm

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestStoredCert covers storedCert's cases on the committed self-signed
// certificate: DER alone and padded, the TCG framing with and without the
// TCG_FULL_CERT tag, a framing whose size runs past the bytes, and bytes
// that are not DER.
func TestStoredCert(t *testing.T) {
	der, err := os.ReadFile(filepath.Join("testdata", "ekcert-selfsigned.der"))
	if err != nil {
		t.Fatal(err)
	}
	frame := func(body []byte, size int) []byte {
		b := binary.BigEndian.AppendUint16([]byte{0x10, 0x01, 0x00}, uint16(size))
		return append(b, body...)
	}
	tagged := append([]byte{0x10, 0x02}, der...)
	for name, c := range map[string]struct{ in, want []byte }{
		"der":                 {der, der},
		"der, zero padding":   {append(bytes.Clone(der), 0, 0, 0, 0), der},
		"framed":              {frame(der, len(der)), der},
		"framed, padding":     {append(frame(der, len(der)), 0xff, 0xff), der},
		"framed, full tag":    {frame(tagged, len(tagged)), der},
		"framed, size beyond": {frame(der, len(der)+1), frame(der, len(der)+1)},
		"not der":             {[]byte("not a certificate"), []byte("not a certificate")},
		"empty":               {[]byte{}, []byte{}},
	} {
		if got := storedCert(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("%s: %d bytes, want %d", name, len(got), len(c.want))
		}
	}
}

// FuzzStoredCert: EK certificate NV contents are written by whoever
// provisioned the TPM; storedCert must return a part of them, never panic.
func FuzzStoredCert(f *testing.F) {
	for _, s := range seeds(f, "*.der") {
		f.Add(s)
		b := binary.BigEndian.AppendUint16([]byte{0x10, 0x01, 0x00}, uint16(len(s)))
		f.Add(append(b, s...))
	}
	f.Add([]byte{0x10, 0x01, 0x00, 0x00, 0x02, 0x10, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		got := storedCert(data)
		if len(got) > len(data) || (len(got) > 0 && !bytes.Contains(data, got)) {
			t.Fatalf("storedCert returned %d bytes not within its %d-byte input", len(got), len(data))
		}
	})
}
