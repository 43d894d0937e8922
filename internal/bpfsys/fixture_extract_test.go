package bpfsys_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestHeaderArrayMatchesManifest checks the test-only extractor against the
// sizes and SHA-256 digests recorded in the fixtures' manifest.json, so the
// kernel tests below run on exactly the bytes bpftool generated.
func TestHeaderArrayMatchesManifest(t *testing.T) {
	raw, err := os.ReadFile(testutil.LskelFile(t, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Headers []struct {
			File   string `json:"file"`
			Arrays []struct {
				CName  string `json:"c_name"`
				Size   int    `json:"size"`
				SHA256 string `json:"sha256"`
			} `json:"arrays"`
		} `json:"headers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Headers) != 6 {
		t.Fatalf("manifest lists %d headers, want 6", len(m.Headers))
	}
	checked := 0
	for _, h := range m.Headers {
		src, err := os.ReadFile(testutil.LskelFile(t, h.File))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range h.Arrays {
			b, found, err := headerArray(src, a.CName)
			if err != nil || !found {
				t.Errorf("%s %s: found=%v err=%v", h.File, a.CName, found, err)
				continue
			}
			sum := sha(b)
			if len(b) != a.Size || hex.EncodeToString(sum[:]) != a.SHA256 {
				t.Errorf("%s %s: %d bytes sha256 %x, manifest %d %s", h.File, a.CName, len(b), sum, a.Size, a.SHA256)
			}
			checked++
		}
	}
	if checked < 18 {
		t.Errorf("checked %d arrays, want at least 18", checked)
	}
}
