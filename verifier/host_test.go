package verifier

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHostRoundTrip writes a host file and reads it back, and refuses
// files that are not one.
func TestHostRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web1.json")
	h := &Host{Version: HostVersion, AKPublic: []byte{1, 2, 3}, Pinned: PinAKFile, EKCertSHA256: "ab",
		TPM: &TPM{Manufacturer: "id:49465800", Vendor: "IFX", Model: "SLB9670", Firmware: "id:00070055"}}
	if err := WriteHost(path, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHost(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if _, err := ReadHost(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	for name, body := range map[string]string{
		"version": `{"version": 2, "ak_public": "AQ==", "pinned": "tofu"}`,
		"pinned":  `{"version": 1, "ak_public": "AQ==", "pinned": "trust me"}`,
		"no ak":   `{"version": 1, "pinned": "tofu"}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadHost(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestReadAKFile reads the three forms of an AK file.
func TestReadAKFile(t *testing.T) {
	dir := t.TempDir()
	ak := []byte{0, 0x23, 0, 0x0b, 9, 9}
	for name, body := range map[string][]byte{
		"pem":    pem.EncodeToMemory(&pem.Block{Type: AKPEMType, Bytes: ak}),
		"base64": []byte(base64.StdEncoding.EncodeToString(ak) + "\n"),
		"raw":    ak,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadAKFile(p); err != nil || !cmp.Equal(got, ak) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
	p := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ak}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAKFile(p); err == nil {
		t.Error("a PEM block of another type: accepted")
	}
}

// TestPin checks which AK is pinned: a state file's is never overridden,
// an AK file or trust on first use pins one for a host without.
func TestPin(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	akFile := filepath.Join(dir, "ak")
	if err := os.WriteFile(akFile, []byte{7, 7}, 0o600); err != nil {
		t.Fatal(err)
	}
	if h, err := Pin(state, akFile, false); err != nil || h.Pinned != PinAKFile || !cmp.Equal(h.AKPublic, []byte{7, 7}) {
		t.Errorf("AK file without a state: %+v, %v", h, err)
	}
	if h, err := Pin(state, "", true); err != nil || h.Pinned != PinTOFU || h.AKPublic != nil {
		t.Errorf("tofu without a state: %+v, %v", h, err)
	}
	if _, err := Pin(state, "", false); err == nil {
		t.Error("nothing to pin: no error")
	}
	if err := WriteHost(state, &Host{Version: HostVersion, AKPublic: []byte{1}, Pinned: PinEKCredential}); err != nil {
		t.Fatal(err)
	}
	if h, err := Pin(state, "", false); err != nil || h.Pinned != PinEKCredential {
		t.Errorf("state that pins: %+v, %v", h, err)
	}
	for _, c := range []struct {
		ak   string
		tofu bool
	}{{akFile, false}, {"", true}} {
		if _, err := Pin(state, c.ak, c.tofu); err == nil {
			t.Errorf("state that pins overridden by ak %q tofu %v", c.ak, c.tofu)
		}
	}
}
