package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// Helpers of the load and quote tests: a real bpfattestd process, built
// from this module, on the in-process simulator.

// agentProc is a running bpfattestd.
type agentProc struct {
	cmd    *exec.Cmd
	socket string
	listen string
	mu     sync.Mutex
	logs   bytes.Buffer // guarded by mu
	exited chan struct{}
}

func (a *agentProc) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.String()
}

// startAgentProc runs the bpfattestd TestMain built with a fresh state
// directory and a socket in a directory every user can traverse; it returns once the daemon logs that it serves. Cleanup stops
// it with SIGTERM and expects exit code 0.
func startAgentProc(t *testing.T, args ...string) *agentProc {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a, err := launchDaemon(dir, args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Error(err)
		}
		<-a.exited
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("bpfattestd exit code %d\n%s", code, a.log())
		}
	})
	return a
}

// helperEnv makes the test binary run one CLI command as a helper process
// (TestHelperCLI): the command and its arguments follow "--" on the test
// binary's command line.
const helperEnv = "BPFATTEST_CLI_HELPER"

// TestHelperCLI is not a test: it is the body of a helper process that
// runs a CLI command under other credentials.
func TestHelperCLI(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process only")
	}
	argv := flag.Args()
	if len(argv) == 0 {
		t.Fatal("helper: no command")
	}
	run := map[string]func(context.Context, []string, io.Writer, io.Writer) int{"load": runLoad, "quote": runQuote}[argv[0]]
	if run == nil {
		t.Fatalf("helper: unknown command %q", argv[0])
	}
	os.Exit(run(t.Context(), argv[1:], os.Stdout, os.Stderr))
}

// runAs runs a CLI command in a copy of the test binary under cred and
// returns its exit code, stdout and stderr.
func runAs(t *testing.T, cred *syscall.Credential, args ...string) (int, string, string) {
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
	bin := filepath.Join(dir, "cli")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"-test.run=^TestHelperCLI$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// fieldOf returns the value after "key:" in a printLoad listing.
func fieldOf(t *testing.T, out, key string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q in output:\n%s", key, out)
	return ""
}

func atou(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
