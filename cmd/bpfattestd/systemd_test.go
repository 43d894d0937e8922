package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// statusClientEnv makes the test binary a local client (see TestMain): it
// calls Status on the socket the variable names and prints the status code.
const statusClientEnv = "BPFATTESTD_TEST_STATUS_CLIENT"

func statusClient(socket string) int {
	conn, err := grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pb.NewLocalServiceClient(conn).Status(ctx, &pb.StatusRequest{})
	fmt.Print(status.Code(err))
	return 0
}

// notifySocket is a service manager's end of sd_notify: an abstract
// datagram socket whose messages arrive on a channel.
type notifySocket struct {
	name string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	name := fmt.Sprintf("@bpfattestd-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{name: name, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			select {
			case n.msgs <- string(buf[:k]):
			default: // a test that stopped reading; drop
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return n
}

// waitFor returns the first message containing want, failing the test
// after a while.
func (n *notifySocket) waitFor(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q from the daemon", want)
		}
	}
}

// TestSystemdNotifyAndActivation runs bpfattestd as systemd runs the
// shipped units: the local socket passed in by socket activation
// (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES=local, descriptor 3), and
// NOTIFY_SOCKET and WATCHDOG_USEC set (Type=notify, WatchdogSec=).
// READY=1 comes only once the agent serves: at that moment the inherited
// socket answers, with the peer-credential check applied (a stranger is
// refused, root is served) and /readyz answers 200; WATCHDOG=1 follows
// at half the watchdog period; SIGTERM sends STOPPING=1 and exits 0, and
// the socket file, which belongs to the service manager, stays.
func TestSystemdNotifyAndActivation(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	socket := filepath.Join(dir, "bpfattestd.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	// As the socket unit's SocketMode=0666 would: open to all, so the
	// peer-credential check is what refuses.
	if err := os.Chmod(socket, 0o666); err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	f, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	defer f.Close()
	notify := newNotifySocket(t)

	args := []string{"--tpm", "sim", "--state-dir", filepath.Join(dir, "state"),
		"--local-socket", filepath.Join(dir, "unused.sock"), "--metrics", "127.0.0.1:0",
		"--log-format", "json", "--observer-interval", "-1s"}
	// LISTEN_PID must be the daemon's own pid: the shell's, kept by exec.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, daemonBinary}, args...)...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=local",
		"NOTIFY_SOCKET="+notify.name, "WATCHDOG_USEC=200000")
	cmd.ExtraFiles = []*os.File{f}
	logs := &syncBuffer{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	metrics := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "serving" {
				m, _ := rec["metrics"].(string)
				metrics <- m
				if rec["socket_activated"] != true {
					t.Errorf("serving without socket activation: %v", rec)
				}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("bpfattestd logs:\n%s", logs)
		}
	})

	notify.waitFor(t, "READY=1")
	// Ready means serving: no retries needed from here.
	addr := <-metrics
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after READY=1: %d %s", code, body)
	}
	if got := runStatusClient(t, socket, nil); got != "OK" {
		t.Errorf("root on the inherited socket: %q, want OK", got)
	}
	if got := runStatusClient(t, socket, &syscall.Credential{Uid: 65534, Gid: 65534}); got != "PermissionDenied" {
		t.Errorf("stranger on the inherited socket: %q, want PermissionDenied", got)
	}
	for range 2 {
		notify.waitFor(t, "WATCHDOG=1")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.waitFor(t, "STOPPING=1")
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != exitOK {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if fi, err := os.Lstat(socket); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("the inherited socket file after exit: %v, %v; want it left to the service manager", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "unused.sock")); err == nil {
		t.Error("--local-socket was created although a socket was passed in")
	}
}

// runStatusClient runs a copy of the test binary, as cred (nil: as
// root), calling Status on socket; it returns the status code's name.
func runStatusClient(t *testing.T, socket string, cred *syscall.Credential) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(filepath.Dir(socket), "client")
	if _, err := os.Stat(client); err != nil {
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(client, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), client)
	cmd.Env = append(os.Environ(), statusClientEnv+"="+socket)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	return string(out)
}

// TestActivationRefusals: descriptors the daemon cannot use as its local
// socket are a configuration error (exit 2), before anything is opened.
func TestActivationRefusals(t *testing.T) {
	testutil.RequireRoot(t)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tf, _ := tcp.(*net.TCPListener).File()
	defer tf.Close()
	file, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, c := range map[string]struct {
		names string
		files []*os.File
		want  string
	}{
		"tcp socket":   {"local", []*os.File{tf}, "unix stream socket"},
		"regular file": {"local", []*os.File{file}, "not a listening stream socket"},
		"two sockets":  {"local:metrics", []*os.File{tf, tf}, "want one socket"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.CommandContext(t.Context(), "/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, daemonBinary,
				"--tpm", "sim", "--state-dir", filepath.Join(dir, "state"), "--local-socket", filepath.Join(dir, "s.sock"))
			cmd.Env = append(os.Environ(), fmt.Sprintf("LISTEN_FDS=%d", len(c.files)), "LISTEN_FDNAMES="+c.names)
			cmd.ExtraFiles = c.files
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != exitUsage || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, exitUsage, c.want, out)
			}
		})
	}
}

// TestReadyzTPMGone: /readyz answers 200 while the TPM answers and 503,
// naming the TPM, once the swtpm under the daemon is gone (after at most
// the second a probe's answer is reused); /healthz stays
// 200 (the process is alive; a restart is the supervisor's decision, made
// when the log breaks). The daemon observes by sweeps only, and none
// runs: another process's program load would otherwise be appended with
// the TPM gone, break the log and stop the daemon before /readyz is asked
// (as designed: TestFaultTPMGone covers that).
func TestReadyzTPMGone(t *testing.T) {
	testutil.RequireRoot(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := t.TempDir()
	d := startFaultDaemon(t, "--tpm", sw.Spec(), "--state-dir", filepath.Join(dir, "state"),
		"--local-socket", filepath.Join(dir, "s.sock"), "--listen", "127.0.0.1:0", "--insecure-loopback",
		"--metrics", "127.0.0.1:0", "--log-format", "json", "--observer", "sweep", "--observer-interval", "-1s")
	addr := d.metricsAddr(t)
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/readyz with the TPM up: %d %q", code, body)
	}
	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	// A probe's answer is reused for a second (one TPM command a second
	// for all probes): the 503 comes within a few.
	code, body := httpGet(t, "http://"+addr+"/readyz")
	for deadline := time.Now().Add(10 * time.Second); code == http.StatusOK && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		code, body = httpGet(t, "http://"+addr+"/readyz")
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "tpm") {
		t.Errorf("/readyz with the TPM gone: %d %q, want 503 naming the tpm", code, body)
	}
	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the TPM gone: %d %q", code, body)
	}
	if code, body := httpGet(t, "http://"+addr+"/metrics"); code != http.StatusOK || !strings.Contains(body, "bpfattest_journal_writable 1") {
		t.Errorf("/metrics: %d, journal writable line missing:\n%s", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
