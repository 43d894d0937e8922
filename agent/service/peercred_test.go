package service

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// clientEnv makes the test binary act as a local client (see TestMain):
// it calls Status on the socket named by the variable and prints the code.
const clientEnv = "BPFATTEST_SERVICE_TEST_CLIENT"

// peerEnv makes the test binary a peer that connects to the socket named
// by the variable, then sets the supplementary groups listed in
// peerGroupsEnv (comma-separated; it needs CAP_SETGID), says "ready" and
// holds the connection until its stdin closes.
const (
	peerEnv       = "BPFATTEST_SERVICE_TEST_PEER"
	peerGroupsEnv = "BPFATTEST_SERVICE_TEST_PEER_GROUPS"
)

func TestMain(m *testing.M) {
	if socket := os.Getenv(clientEnv); socket != "" {
		os.Exit(statusClient(socket))
	}
	if socket := os.Getenv(peerEnv); socket != "" {
		os.Exit(holdPeer(socket, os.Getenv(peerGroupsEnv)))
	}
	os.Exit(m.Run())
}

func holdPeer(socket, groups string) int {
	c, err := net.Dial("unix", socket)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer c.Close()
	if groups != "" {
		var gids []int
		for _, g := range strings.Split(groups, ",") {
			n, err := strconv.Atoi(g)
			if err != nil {
				fmt.Println(err)
				return 1
			}
			gids = append(gids, n)
		}
		if err := syscall.Setgroups(gids); err != nil {
			fmt.Println("setgroups:", err)
			return 1
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func statusClient(socket string) int {
	conn, err := grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer conn.Close()
	_, err = pb.NewLocalServiceClient(conn).Status(context.Background(), &pb.StatusRequest{})
	fmt.Print(status.Code(err))
	return 0
}

// TestPeerCredHandshake proves the handshake reads the real peer's
// credentials from the kernel, and its executable and digest from /proc.
func TestPeerCredHandshake(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		p   PeerCred
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_, ai, err := newPeerCredentials(-1, nil, discard()).ServerHandshake(c)
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{p: ai.(PeerCred)}
	}()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.p.UID != uint32(os.Geteuid()) || r.p.GID != uint32(os.Getegid()) || r.p.PID != uint32(os.Getpid()) {
		t.Errorf("peer %+v, want uid %d gid %d pid %d", r.p, os.Geteuid(), os.Getegid(), os.Getpid())
	}
	if wantAllowed := os.Geteuid() == 0; r.p.Allowed != wantAllowed {
		t.Errorf("allowed %v, want %v", r.p.Allowed, wantAllowed)
	}
	if !r.p.Allowed {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if r.p.Exe != exe || !bytes.Equal(r.p.ExeSHA256, sum[:]) {
		t.Errorf("exe %s %x, want %s %x", r.p.Exe, r.p.ExeSHA256, exe, sum)
	}
	if req := r.p.Requester(); req.UID != r.p.UID || req.PID != r.p.PID || req.Exe != exe {
		t.Errorf("requester %+v does not match the peer", req)
	}
}

// TestAllowedSupplementaryGroups proves group membership is read from a
// real peer's supplementary groups, not only its primary gid.
func TestAllowedSupplementaryGroups(t *testing.T) {
	testutil.RequireRoot(t)
	exe := peerBinary(t)
	ln, err := net.Listen("unix", filepath.Join(filepath.Dir(exe), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(ln.Addr().String(), 0o666); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe)
	cmd.Env = append(os.Environ(), peerEnv+"="+ln.Addr().String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{100, 27}}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The handshake reads the socket's credentials and exchanges nothing:
	// one connection serves every group checked.
	for group, want := range map[int]bool{100: true, 27: true, 65534: true, 4: false, -1: false} {
		_, ai, err := newPeerCredentials(group, nil, discard()).ServerHandshake(conn)
		if err != nil {
			t.Fatal(err)
		}
		if got := ai.(PeerCred).Allowed; got != want {
			t.Errorf("group %d: allowed %v, want %v", group, got, want)
		}
	}
}

// TestLocalRefusesStranger proves a peer that is neither root nor in the
// group gets PermissionDenied before any handler runs: the server has no
// agent, so a handler that ran would crash the test.
func TestLocalRefusesStranger(t *testing.T) {
	testutil.RequireRoot(t)
	// A copy of the test binary the unprivileged user can run.
	client := peerBinary(t)
	socket := filepath.Join(filepath.Dir(client), "agent.sock")
	ln, err := ListenUnix(socket, 100)
	if err != nil {
		t.Fatal(err)
	}
	// World-connectable, so the peer-credential check is all that stands
	// between the stranger and the handlers.
	if err := os.Chmod(socket, 0o666); err != nil {
		t.Fatal(err)
	}
	s := New(nil, Options{LocalGroup: 100})
	go s.ServeLocal(ln)
	defer s.Shutdown(t.Context())

	for name, cred := range map[string]*syscall.Credential{
		"stranger":           {Uid: 65534, Gid: 65534},
		"stranger in groups": {Uid: 65534, Gid: 65534, Groups: []uint32{4, 27}},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), client)
			cmd.Env = append(os.Environ(), clientEnv+"="+socket)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("client: %v\n%s", err, out)
			}
			if string(out) != "PermissionDenied" {
				t.Fatalf("client got %q, want PermissionDenied", out)
			}
		})
	}
}

// TestPeerGroupsAtConnect proves the served group is decided by the
// supplementary groups the peer had when it connected, as the kernel
// recorded them on the socket, not by what /proc says at the handshake: a
// peer that gains the group after connecting (here with CAP_SETGID; a pid
// reused by another process is the same race) stays refused, and one that
// drops it after connecting stays served.
func TestPeerGroupsAtConnect(t *testing.T) {
	testutil.RequireRoot(t)
	const group = 4242
	exe := peerBinary(t)
	dir := filepath.Dir(exe)
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(ln.Addr().String(), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		atConnect []uint32
		after     string
		want      bool
	}{
		{"gains the group after connecting", nil, strconv.Itoa(group), false},
		{"drops the group after connecting", []uint32{group}, "27", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), exe)
			cmd.Env = append(os.Environ(), peerEnv+"="+ln.Addr().String(), peerGroupsEnv+"="+tc.after)
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: 65534, Gid: 65534, Groups: tc.atConnect},
				AmbientCaps: []uintptr{capSetgid},
			}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			conn, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// The peer has changed its groups once it says so.
			if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
				t.Fatalf("peer said %q: %v", line, err)
			}
			_, ai, err := newPeerCredentials(group, nil, discard()).ServerHandshake(conn)
			if err != nil {
				t.Fatal(err)
			}
			if p := ai.(PeerCred); p.Allowed != tc.want {
				t.Fatalf("peer uid %d gid %d (groups at connect %v, now %s): allowed %v, want %v",
					p.UID, p.GID, tc.atConnect, tc.after, p.Allowed, tc.want)
			}
		})
	}
}

// capSetgid is CAP_SETGID (linux/capability.h).
const capSetgid = 6

// peerBinary copies the test binary where uid 65534 can run it, and
// returns its path in a directory (0755) of its own.
func peerBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(dir, "client")
	if err := os.WriteFile(client, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return client
}
