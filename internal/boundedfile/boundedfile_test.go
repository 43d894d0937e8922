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
	// A regular file over the limit is refused by its size, before any
	// byte is read: a sparse file of 1 GiB costs neither disk nor time.
	sparse := filepath.Join(dir, "sparse")
	if err := os.WriteFile(sparse, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 1<<30+1); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(sparse, 1<<30); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1073741825 bytes") {
		t.Errorf("sparse file past the limit: %v, want ErrTooLarge naming its size", err)
	}
	// Character devices are read up to the limit and refused past it.
	if b, err := ReadFile("/dev/null", 16); err != nil || len(b) != 0 {
		t.Errorf("/dev/null: %d bytes, %v", len(b), err)
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
