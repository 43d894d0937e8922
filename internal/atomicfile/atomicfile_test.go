package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWrite replaces a file with the mode asked for and leaves no
// temporary file behind, and fails without touching anything in a
// directory that does not exist.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	fi, serr := os.Stat(path)
	if err != nil || serr != nil || string(b) != "new" || fi.Mode().Perm() != 0o644 {
		t.Errorf("after Write: %q (%v), mode %v (%v)", b, err, fi.Mode(), serr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want the file alone", len(ents))
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("write into a missing directory: no error")
	}
}
