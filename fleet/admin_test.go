package fleet

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/verifier"
)

// TestValidate: what a registration may say, and its defaults.
func TestValidate(t *testing.T) {
	fp := strings.Repeat("Ab", 32)
	ok := []AgentSpec{
		{Name: "web1", Address: "127.0.0.1:7433"},
		{Name: "web1.example", Address: "[::1]:1", ServerName: "web1.example", CertSHA256: fp},
		{Name: "edge", Mode: "push", CertSHA256: fp, Policy: "strict-2"},
		{Name: "db1", Address: "db1:7433", AKPublic: []byte{1}, AKPinned: verifier.PinEKCredential, EKCertSHA256: fp},
	}
	for _, s := range ok {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
	s := AgentSpec{Name: "x", Address: "h:1", AKPublic: []byte{1}, CertSHA256: fp}
	if err := s.Validate(); err != nil || s.Mode != "pull" || s.AKPinned != verifier.PinAKFile || s.CertSHA256 != strings.ToLower(fp) {
		t.Errorf("defaults: %+v, %v", s, err)
	}
	bad := []AgentSpec{
		{Name: "bad name", Address: "h:1"},
		{Name: "", Address: "h:1"},
		{Name: "a", Address: "nohost"},
		{Name: "a", Address: "h:0"},
		{Name: "a", Address: "h:99999"},
		{Name: "a", Mode: "push"},
		{Name: "a", Mode: "push", CertSHA256: fp, Address: "h:1"},
		{Name: "a", Mode: "carrier-pigeon", Address: "h:1"},
		{Name: "a", Address: "h:1", CertSHA256: "abc"},
		{Name: "a", Address: "h:1", Policy: "../etc"},
		{Name: "a", Address: "h:1", AKPinned: verifier.PinTOFU},
		{Name: "a", Address: "h:1", AKPublic: []byte{1}, AKPinned: "trust me"},
		{Name: "a", Address: "h:1", AKPublic: []byte{1}, EKCertSHA256: "zz"},
		{Name: "a", Address: "h:1", State: []byte("BPFV")},
		{Name: "a", Address: "h:1", AKPublic: []byte{1}, State: []byte("BPFV")},
	}
	for _, s := range bad {
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", s, err)
		}
	}
}
