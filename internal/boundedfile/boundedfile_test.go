package boundedfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadFile proves a file of exactly the limit is read whole, one byte
// more is refused with ErrTooLarge and the path, an endless device is
// refused after limit+1 bytes, and a missing file keeps os.ErrNotExist.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	exact := filepath.Join(dir, "exact")
	over := filepath.Join(dir, "over")
	if err := os.WriteFile(exact, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(over, make([]byte, 4097), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(exact, 4096); err != nil || len(b) != 4096 {
		t.Fatalf("file at the limit: %d bytes, %v", len(b), err)
	}
	for _, path := range []string{over, "/dev/zero"} {
		_, err := ReadFile(path, 4096)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err %v, want ErrTooLarge naming the path", path, err)
		}
	}
	if b, err := ReadFile(exact, 0); !errors.Is(err, ErrTooLarge) || b != nil {
		t.Errorf("limit 0: %d bytes, %v", len(b), err)
	}
	if _, err := ReadFile(exact, -1); err == nil {
		t.Error("negative limit accepted")
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ReadFile(dir, 1); err == nil {
		t.Error("a directory read as a file")
	}
}
