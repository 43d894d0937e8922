package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// The binaries the tests run, built once by TestMain ("" when a test
// cannot use them: the agent needs root).
var agentBin, serviceBin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "verifierd-test-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		serviceBin = filepath.Join(dir, "bpfattest-verifierd")
		if out, err := exec.Command("go", "build", "-o", serviceBin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build bpfattest-verifierd: %v\n%s", err, out)
			return 1
		}
		if os.Geteuid() == 0 {
			agentBin = filepath.Join(dir, "bpfattestd")
			if out, err := exec.Command("go", "build", "-o", agentBin, "../bpfattestd").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "go build bpfattestd: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// proc is a daemon the test started, with its stderr kept.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   bytes.Buffer // guarded by mu
	exited chan struct{}
	// ready holds the "serving" log record's attributes.
	ready map[string]any
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// start runs bin with args and returns once it logs "serving" (JSON logs).
func start(bin string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	serving := make(chan map[string]any, 1)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(append(sc.Bytes(), '\n'))
			p.mu.Unlock()
			var rec map[string]any
			if !sent && json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "serving" {
				serving <- rec
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
		p.cmd.Wait()
		if !sent {
			close(serving)
		}
	}()
	select {
	case rec, ok := <-serving:
		if !ok {
			return nil, fmt.Errorf("%s exited before serving\n%s", filepath.Base(bin), p.log())
		}
		p.ready = rec
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not serve within a minute\n%s", filepath.Base(bin), p.log())
	}
	return p, nil
}

// stop ends the daemon with SIGTERM and expects exit code 0.
func (p *proc) stop(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Error(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		tb.Errorf("%s did not stop within 30s\n%s", p.cmd.Path, p.log())
		return
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		tb.Errorf("%s exit code %d\n%s", filepath.Base(p.cmd.Path), code, p.log())
	}
}

// agent is a real bpfattestd on the simulator serving its remote API on a
// loopback port without TLS.
type agent struct {
	*proc
	listen, socket string
}

// spawnAgents starts n agents, a few at a time.
func spawnAgents(tb testing.TB, n int, extra ...string) []*agent {
	tb.Helper()
	testutil.RequireRoot(tb)
	if agentBin == "" {
		tb.Fatal("bpfattestd was not built")
	}
	out := make([]*agent, n)
	errs := make([]error, n)
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = tb.TempDir()
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2*runtime.NumCPU())
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sock := filepath.Join(dirs[i], "agent.sock")
			p, err := start(agentBin, append([]string{"--tpm", "sim", "--state-dir", filepath.Join(dirs[i], "state"), "--local-socket", sock,
				"--log-format", "json", "--observer-interval", "-1s", "--listen", "127.0.0.1:0", "--insecure-loopback"}, extra...)...)
			if err != nil {
				errs[i] = err
				return
			}
			listen, _ := p.ready["listen"].(string)
			out[i] = &agent{proc: p, listen: listen, socket: sock}
		})
	}
	wg.Wait()
	for _, a := range out {
		if a != nil {
			tb.Cleanup(func() { a.stop(tb) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("agents did not start: %v", err)
	}
	return out
}

// load loads a fixture through the agent's local socket.
func (a *agent) load(tb testing.TB, fixture string) {
	tb.Helper()
	art, err := os.ReadFile(testutil.LskelFile(tb, fixture))
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := grpc.NewClient("unix:"+a.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewLocalServiceClient(conn).Load(tb.Context(), &pb.LoadRequest{Artifact: art}); err != nil {
		tb.Fatalf("load %s: %v", fixture, err)
	}
}

// pki is a test CA with the service's certificate and client certificates
// for the roles.
type pki struct {
	ca, server, admin, reader, stranger *testutil.Cert
}

func newPKI(tb testing.TB) *pki {
	ca := testutil.NewCert(tb, "fleet test CA", nil, false)
	p := &pki{ca: ca, server: testutil.NewCert(tb, "fleet", ca, true)}
	p.admin = clientCert(tb, ca, "alice", "bpfattest-admin")
	p.reader = clientCert(tb, ca, "bob", "bpfattest-reader")
	p.stranger = clientCert(tb, ca, "mallory", "")
	return p
}

// clientCert issues a client certificate with an OU (testutil's
// certificates have none).
func clientCert(tb testing.TB, ca *testutil.Cert, cn, ou string) *testutil.Cert {
	tb.Helper()
	c := testutil.NewCert(tb, cn, ca, false)
	if ou == "" {
		return c
	}
	tmpl := *c.Cert
	tmpl.Subject = pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}}
	tmpl.RawSubject = nil
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Cert, &c.Key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	c.Cert = cert
	writePEM(tb, c.CertFile, "CERTIFICATE", der)
	return c
}

// tlsClient is an HTTP client presenting c to the service.
func (p *pki) tlsClient(c *testutil.Cert) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	if c != nil {
		cfg.Certificates = []tls.Certificate{c.TLS()}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

// getJSON fetches url into v and returns the status code.
func getJSON(tb testing.TB, c *http.Client, url string, v any) int {
	tb.Helper()
	rsp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(rsp.Body)
	if rsp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			tb.Fatalf("GET %s: %v\n%s", url, err, b)
		}
	}
	return rsp.StatusCode
}

// waitFor polls cond every 100 ms until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			tb.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

var _ = context.Background
