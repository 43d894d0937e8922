package service

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

// withUmask runs fn with the process umask set to mask: under umask 0 a
// file gets exactly the mode its creator asked for, so the modes checked
// below are the code's, not the environment's.
func withUmask(mask int, fn func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	fn()
}

// TestStateFileModes proves that everything the agent creates in its state
// directory (the directory itself, the event logs, the lock, the AK blob)
// is private to its owner, even under umask 0: directories 0700, files
// 0600. The log and the AK blob are never world- or group-readable.
func TestStateFileModes(t *testing.T) {
	testutil.RequireRoot(t)
	state := filepath.Join(t.TempDir(), "state")
	withUmask(0, func() {
		a, err := agent.New(t.Context(), agent.Config{TPM: "sim", StateDir: state, ObserverInterval: -1})
		if err != nil {
			t.Fatalf("agent.New: %v", err)
		}
		if _, err := a.Quote(t.Context(), []byte("0123456789abcdef0123456789abcdef"), 0); err != nil {
			t.Fatalf("quote: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	})
	var files, dirs int
	err := filepath.WalkDir(state, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(state, path)
		switch {
		case fi.IsDir():
			dirs++
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("directory %s: mode %v, want 0700", rel, fi.Mode().Perm())
			}
		case fi.Mode().IsRegular():
			files++
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("file %s: mode %v, want 0600", rel, fi.Mode().Perm())
			}
		default:
			t.Errorf("%s: unexpected %v in the state directory", rel, fi.Mode().Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// At least the state directory, a boot's log, and the AK blob.
	if dirs < 1 || files < 2 {
		t.Fatalf("walked %d directories and %d files: the agent wrote less than expected", dirs, files)
	}
}

// TestSocketModeUnderUmaskZero proves the local socket is never
// world-accessible, whatever the umask: it is chmod'ed to 0660 after
// creation.
func TestSocketModeUnderUmaskZero(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "agent.sock")
	var ln net.Listener
	withUmask(0, func() {
		var err error
		if ln, err = ListenUnix(path, -1); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 || perm != 0o660 {
		t.Fatalf("socket mode %v, want 0660 (no access for others)", perm)
	}
}
