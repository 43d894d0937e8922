package service

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

func TestMain(m *testing.M) {
	if socket := os.Getenv(clientEnv); socket != "" {
		os.Exit(statusClient(socket))
	}
	os.Exit(m.Run())
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
		_, ai, err := newPeerCredentials(-1, discard()).ServerHandshake(c)
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
// real process's supplementary groups, not only its primary gid.
func TestAllowedSupplementaryGroups(t *testing.T) {
	testutil.RequireRoot(t)
	setpriv := testutil.RequireTool(t, "setpriv")
	// The shell runs with the new credentials (setpriv sets them, then
	// execs it), says so, and becomes cat, which blocks on its stdin until
	// the test closes it: a live process with known credentials.
	cmd := exec.CommandContext(t.Context(), setpriv, "--reuid=65534", "--regid=65534", "--groups=100,27",
		"sh", "-c", "echo ready; exec cat")
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
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("child said %q: %v", line, err)
	}
	pid := uint32(cmd.Process.Pid)
	for group, want := range map[int]bool{100: true, 27: true, 65534: true, 4: false, -1: false} {
		c := &peerCredentials{group: group, logger: discard()}
		if got := c.allowed(65534, 65534, pid); got != want {
			t.Errorf("group %d: allowed %v, want %v", group, got, want)
		}
	}
	if !(&peerCredentials{group: -1, logger: discard()}).allowed(0, 0, pid) {
		t.Error("root refused")
	}
}

// TestLocalRefusesStranger proves a peer that is neither root nor in the
// group gets PermissionDenied before any handler runs: the server has no
// agent, so a handler that ran would crash the test.
func TestLocalRefusesStranger(t *testing.T) {
	testutil.RequireRoot(t)
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
	// A copy of the test binary the unprivileged user can run.
	client := filepath.Join(dir, "client")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(client, b, 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "agent.sock")
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
