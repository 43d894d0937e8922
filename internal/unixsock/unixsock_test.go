package unixsock_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/unixsock"
)

// pair returns both ends of a connected unix socket: the server's end is
// what PeerCred reads.
func pair(t *testing.T) (server, client *net.UnixConn) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

func rawConn(t *testing.T, c *net.UnixConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestPeerCred reads this process's own credentials back through a socket
// it connected to itself.
func TestPeerCred(t *testing.T) {
	server, _ := pair(t)
	c, err := unixsock.PeerCred(rawConn(t, server))
	if err != nil {
		t.Fatal(err)
	}
	if c.UID != uint32(os.Geteuid()) || c.GID != uint32(os.Getegid()) || c.PID != uint32(os.Getpid()) {
		t.Errorf("cred %+v, want uid %d gid %d pid %d", c, os.Geteuid(), os.Getegid(), os.Getpid())
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	want := make([]uint32, len(groups))
	for i, g := range groups {
		want[i] = uint32(g)
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(c.Groups))
	if !slices.Equal(got, want) {
		t.Errorf("groups %v, want %v", got, want)
	}
}

// TestPeerCredManyGroups proves the groups buffer grows past its first
// size: a peer with 200 supplementary groups.
func TestPeerCredManyGroups(t *testing.T) {
	testutil.RequireRoot(t)
	var groups []uint32
	for g := range uint32(200) {
		groups = append(groups, 10000+g)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// socat-free peer: a shell cannot connect to a unix socket, the test
	// binary can (TestMain's helper mode).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe)
	cmd.Env = append(os.Environ(), connectEnv+"="+ln.Addr().String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: groups}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := unixsock.PeerCred(rawConn(t, conn))
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(c.Groups)); !slices.Equal(got, groups) {
		t.Fatalf("%d groups %v, want %d", len(got), got, len(groups))
	}
	if c.PID != uint32(cmd.Process.Pid) {
		t.Errorf("pid %d, want %d", c.PID, cmd.Process.Pid)
	}
}

// TestPeerProcess takes a pidfd for a peer, sees it alive, then sees it
// gone once the peer has exited, although its socket is still open here.
func TestPeerProcess(t *testing.T) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe)
	cmd.Env = append(os.Environ(), connectEnv+"="+ln.Addr().String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p, err := unixsock.PeerProcess(rawConn(t, conn))
	if errors.Is(err, errors.ErrUnsupported) {
		testutil.SkipEnv(t, "SO_PEERPIDFD: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.PID() != uint32(cmd.Process.Pid) || !p.Alive() {
		t.Fatalf("pidfd for pid %d alive %v, want pid %d alive", p.PID(), p.Alive(), cmd.Process.Pid)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("pidfd of an exited peer says alive")
	}
	// A peer that has exited gives no pidfd at all.
	if p2, err := unixsock.PeerProcess(rawConn(t, conn)); err == nil {
		alive := p2.Alive()
		p2.Close()
		if alive {
			t.Fatal("a new pidfd for an exited peer says alive")
		}
	}
}

// TestSetSocketMode sets a real socket file's owner and mode, and refuses
// a symbolic link (leaving its target alone), a regular file and a missing
// name.
func TestSetSocketMode(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := unixsock.SetSocketMode(sock, 0, 100, 0o660); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != 100 {
		t.Errorf("socket %v %d:%d, want -rw-rw---- 0:100", fi.Mode(), st.Uid, st.Gid)
	}

	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{link, victim} {
		if err := unixsock.SetSocketMode(path, 0, 100, 0o666); !errors.Is(err, unixsock.ErrNotSocket) {
			t.Errorf("%s: %v, want ErrNotSocket", path, err)
		}
	}
	fi, err = os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || st.Gid != 0 {
		t.Errorf("the link's target became %v gid %d", fi.Mode(), st.Gid)
	}
	if err := unixsock.SetSocketMode(filepath.Join(dir, "missing"), 0, 0, 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v, want ErrNotExist", err)
	}
}
