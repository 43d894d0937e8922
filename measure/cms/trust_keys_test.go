package cms

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadTrustPrivateKeys: a trust directory laid out as bpftool's key
// directory is (the signing certificate beside its private key, PEM and
// DER) loads the certificates and skips each key with a warning; a key
// named as a trust file is still an error; a PEM file with a certificate
// and a key loads the certificate, with a warning.
func TestLoadTrustPrivateKeys(t *testing.T) {
	keys := filepath.Join("..", "testdata", "lskel", "keys")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(keys, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dir := t.TempDir()
	for _, name := range []string{"TEST_ONLY_signing_cert.pem", "TEST_ONLY_signing_key.pem", "TEST_ONLY_signing_key.der"} {
		if err := os.WriteFile(filepath.Join(dir, name), read(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := LoadTrust(dir)
	if err != nil {
		t.Fatalf("directory with keys: %v", err)
	}
	if n := len(ts.Certificates()); n != 1 {
		t.Errorf("%d certificates, want 1", n)
	}
	w := ts.Warnings()
	if len(w) != 2 || !strings.Contains(w[0], "TEST_ONLY_signing_key.der: a private key") || !strings.Contains(w[1], "TEST_ONLY_signing_key.pem: a private key") {
		t.Errorf("warnings %q", w)
	}

	if _, err := LoadTrust(filepath.Join(dir, "TEST_ONLY_signing_key.pem")); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("a key named as a trust file: %v", err)
	}
	both := filepath.Join(t.TempDir(), "both.pem")
	if err := os.WriteFile(both, append(read("TEST_ONLY_signing_cert.pem"), read("TEST_ONLY_signing_key.pem")...), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, err = LoadTrust(both)
	if err != nil || len(ts.Certificates()) != 1 || len(ts.Warnings()) != 1 {
		t.Errorf("certificate and key in one file: %v, warnings %q", err, ts.Warnings())
	}
	// Anything else that is not a certificate stays an error.
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"), 0o600)
	if _, err := LoadTrust(filepath.Dir(junk)); err == nil {
		t.Error("a directory with a file that holds no certificate loaded")
	}
}
