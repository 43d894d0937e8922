package service

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestListenUnix proves the local socket's file: mode 0660, owner root,
// the configured group; a stale socket is replaced, any other file is not.
func TestListenUnix(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "run", "agent.sock")
	for range 2 { // the second pass replaces the first's stale socket
		ln, err := ListenUnix(path, 65534)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != 65534 {
			t.Errorf("socket mode %v uid %d gid %d, want 0660 0 65534", fi.Mode().Perm(), st.Uid, st.Gid)
		}
		// Keep the file as a stale socket for the next pass.
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
	}
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := ListenUnix(regular, -1); err == nil {
		ln.Close()
		t.Fatal("a regular file was replaced by the socket")
	}
	if _, err := os.Stat(regular); errors.Is(err, fs.ErrNotExist) {
		t.Fatal("regular file removed")
	}
}

// TestListenUnixSwapped proves the socket's owner and mode are set on the
// socket itself, never through a symbolic link: when the name is swapped
// for a link to a root-only file between bind and the change (someone
// who can write the socket's directory), the file keeps its owner and
// mode and the listener is refused.
func TestListenUnixSwapped(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "shadow")
	if err := os.WriteFile(victim, []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.sock")
	ln, err := listenUnix(path, 65534, func() {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(victim, path); err != nil {
			t.Error(err)
		}
	})
	if err == nil {
		ln.Close()
		t.Error("a socket path swapped for a symbolic link was accepted")
	}
	fi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("the link's target became %v %d:%d, want -rw------- 0:0", fi.Mode().Perm(), st.Uid, st.Gid)
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:7433":     true,
		"127.9.8.7:1":        true,
		"[::1]:7433":         true,
		"localhost:7433":     true,
		"0.0.0.0:7433":       false,
		"[::]:7433":          false,
		"10.0.0.1:7433":      false,
		"example.com:7433":   false,
		"127.0.0.1":          false, // no port
		"127.0.0.1.nip.io:1": false,
	} {
		err := CheckLoopback(addr)
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want ok %v", addr, err, ok)
		}
		if err != nil && ok == false && !errors.Is(err, ErrNotLoopback) && addr != "127.0.0.1" {
			t.Errorf("%s: %v does not wrap ErrNotLoopback", addr, err)
		}
	}
}
