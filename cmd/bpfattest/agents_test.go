package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// Helpers of the verifier tests: real bpfattestd processes, each with its
// own in-process TPM simulator, serving on loopback. The daemon is built
// once per test binary, by TestMain, when the tests run as root.

// daemonBin is the bpfattestd built by TestMain ("" when not root).
var daemonBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 || os.Getenv(helperEnv) == "1" {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "bpfattestd-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bin := filepath.Join(dir, "bpfattestd")
		if out, err := exec.Command("go", "build", "-o", bin, "../bpfattestd").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build bpfattestd: %v\n%s", err, out)
			return 1
		}
		daemonBin = bin
		return m.Run()
	}()
	os.Exit(code)
}

// spawnAgent runs the daemon built by TestMain on the simulator with a
// fresh state directory, serving the remote API without TLS on a loopback
// port, plus args; it returns once the daemon serves. Cleanup stops it
// with SIGTERM and expects exit code 0.
func spawnAgent(tb testing.TB, args ...string) *agentProc {
	tb.Helper()
	testutil.RequireRoot(tb)
	a, err := startDaemon(tb.TempDir(), args)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stopAgent(tb, a) })
	return a
}

// startDaemon is spawnAgent's body, safe to call from any goroutine: the
// remote API without TLS on a loopback port, no quote rate limit.
func startDaemon(dir string, args []string) (*agentProc, error) {
	return launchDaemon(dir, append([]string{"--listen", "127.0.0.1:0", "--insecure-loopback"}, args...))
}

// launchDaemon runs the daemon built by TestMain on the simulator with its
// state and socket under dir, and returns once it logs that it serves.
func launchDaemon(dir string, args []string) (*agentProc, error) {
	if daemonBin == "" {
		return nil, errors.New("bpfattestd was not built by TestMain")
	}
	a := &agentProc{socket: filepath.Join(dir, "run", "agent.sock"), exited: make(chan struct{})}
	a.cmd = exec.Command(daemonBin, append([]string{"--tpm", "sim", "--state-dir", filepath.Join(dir, "state"),
		"--local-socket", a.socket, "--log-format", "json", "--observer-interval", "-1s"}, args...)...)
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	serving := make(chan string, 1)
	go func() {
		defer close(a.exited)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			a.mu.Lock()
			a.logs.Write(append(sc.Bytes(), '\n'))
			a.mu.Unlock()
			var rec struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if !sent && json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" {
				serving <- rec.Listen
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
		a.cmd.Wait()
		if !sent {
			close(serving)
		}
	}()
	listen, ok := <-serving
	if !ok {
		return nil, fmt.Errorf("bpfattestd exited before serving\n%s", a.log())
	}
	a.listen = listen
	return a, nil
}

// stopAgent stops an agent with SIGTERM and waits for it.
func stopAgent(tb testing.TB, a *agentProc) {
	tb.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Error(err)
	}
	<-a.exited
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		tb.Errorf("bpfattestd exit code %d\n%s", code, a.log())
	}
}

// spawnAgents starts n agents, a few at a time; args(i) gives agent i's
// extra flags.
func spawnAgents(tb testing.TB, n int, args func(i int) []string) []*agentProc {
	tb.Helper()
	testutil.RequireRoot(tb)
	out := make([]*agentProc, n)
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
			out[i], errs[i] = startDaemon(dirs[i], args(i))
		})
	}
	wg.Wait()
	for _, a := range out {
		if a != nil {
			tb.Cleanup(func() { stopAgent(tb, a) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("agents did not start: %v", err)
	}
	return out
}

// loadInto loads a fixture through the agent's local socket and fails the
// test unless the exit code is want.
func loadInto(tb testing.TB, a *agentProc, fixture string, want int) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	if code := runLoad(tb.Context(), []string{testutil.LskelFile(tb, fixture), "--socket", a.socket}, &stdout, &stderr); code != want {
		tb.Fatalf("load %s: exit %d, want %d\n%s%s", fixture, code, want, stdout.String(), stderr.String())
	}
}
