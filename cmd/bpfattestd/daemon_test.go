package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// daemonBinary is the bpfattestd built once by TestMain for this package's
// tests.
var daemonBinary string

func TestMain(m *testing.M) {
	if socket := os.Getenv(statusClientEnv); socket != "" {
		os.Exit(statusClient(socket))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bpfattestd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	daemonBinary = filepath.Join(dir, "bpfattestd")
	build := exec.Command("go", "build", "-o", daemonBinary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "go build bpfattestd: %v\n", err)
		return 1
	}
	return m.Run()
}

// daemon is a running bpfattestd process.
type daemon struct {
	cmd     *exec.Cmd
	socket  string
	listen  string // the remote API's address, if served
	metrics string
	health  string
	logs    *syncBuffer
	exited  chan struct{}
	waitErr error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDaemon runs bpfattestd on the in-process simulator with a fresh
// state directory and local socket, plus args, and returns once it logs
// that it is serving. The test's cleanup stops it with SIGTERM and checks
// it exits 0.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	d := &daemon{socket: filepath.Join(dir, "run", "bpfattestd.sock"), logs: &syncBuffer{}, exited: make(chan struct{})}
	full := append([]string{
		"--tpm", "sim", "--state-dir", filepath.Join(dir, "state"),
		"--local-socket", d.socket, "--log-format", "json", "--log-level", "debug",
		"--observer-interval", "-1s",
	}, args...)
	d.cmd = exec.Command(daemonBinary, full...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			d.logs.Write(append(line, '\n'))
			var rec map[string]any
			if !sent && json.Unmarshal(line, &rec) == nil && rec["msg"] == "serving" {
				serving <- rec
				sent = true
			}
		}
		io.Copy(d.logs, stderr)
		d.waitErr = d.cmd.Wait()
		close(d.exited)
		close(serving)
	}()
	rec, ok := <-serving
	if !ok {
		t.Fatalf("bpfattestd exited before serving: %v\n%s", d.waitErr, d.logs)
	}
	d.listen, _ = rec["listen"].(string)
	d.metrics, _ = rec["metrics"].(string)
	d.health, _ = rec["health"].(string)
	t.Cleanup(func() {
		if code := d.stop(t); code != 0 {
			t.Errorf("bpfattestd exit code %d after SIGTERM\n%s", code, d.logs)
		}
		if t.Failed() {
			t.Logf("bpfattestd logs:\n%s", d.logs)
		}
	})
	return d
}

// stop sends SIGTERM and waits for the exit; it returns the exit code.
func (d *daemon) stop(t testing.TB) int {
	t.Helper()
	select {
	case <-d.exited:
	default:
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("SIGTERM: %v", err)
		}
		<-d.exited
	}
	return d.cmd.ProcessState.ExitCode()
}

// runDaemon runs bpfattestd to its exit (for configurations it must
// refuse) and returns the exit code and its stderr.
func runDaemon(t *testing.T, args ...string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	full := append([]string{"--tpm", "sim", "--state-dir", filepath.Join(dir, "state"),
		"--local-socket", filepath.Join(dir, "s.sock")}, args...)
	cmd := exec.CommandContext(t.Context(), daemonBinary, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func (d *daemon) local(t *testing.T) pb.LocalServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix:"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewLocalServiceClient(conn)
}

// remote connects to the remote API with cfg (nil: without TLS).
func (d *daemon) remote(t testing.TB, cfg *tls.Config) pb.AttestationServiceClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient("passthrough:///"+d.listen, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewAttestationServiceClient(conn)
}

// clientTLS is a verifier's TLS configuration: trust ca, present client
// (nil: no certificate), speak exactly version.
func clientTLS(ca *testutil.Cert, client *testutil.Cert, version uint16) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version}
	if client != nil {
		cfg.Certificates = []tls.Certificate{client.TLS()}
	}
	return cfg
}

func fixture(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.LskelFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctxWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
