package tpmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// SwtpmOptions configures StartSwtpm. The zero value is a fresh, bare TPM
// state with swtpm's defaults (banks sha1, sha256, sha384, sha512).
type SwtpmOptions struct {
	// StateDir keeps the TPM state. Empty means a fresh temporary directory.
	// Reusing a directory across StartSwtpm calls in one test models the
	// same TPM after a power cycle.
	StateDir string
	// PCRBanks, when set, provisions a fresh state with swtpm_setup so that
	// only these banks are allocated, e.g. []string{"sha256"} (what
	// swtpm_setup does by default on Debian). Needs swtpm_setup.
	PCRBanks []string
}

// Swtpm is a running swtpm process: a TPM 2.0 in its own process, keeping
// its state on disk, reached over a unix command socket and a control
// socket.
type Swtpm struct {
	tb       testing.TB
	stateDir string
	sockDir  string
	cmd      *exec.Cmd
	logPath  string
}

// StartSwtpm starts swtpm for the test and stops it in tb.Cleanup. It skips
// the test (testutil.SkipEnv) when swtpm is not installed.
func StartSwtpm(tb testing.TB, opts SwtpmOptions) *Swtpm {
	tb.Helper()
	testutil.RequireTool(tb, "swtpm")
	// Unix socket paths are limited to 108 bytes; test temp dirs carry the
	// test name and can be longer, so the sockets get a short directory.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		tb.Fatalf("swtpm: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &Swtpm{tb: tb, stateDir: opts.StateDir, sockDir: sockDir, logPath: filepath.Join(sockDir, "swtpm.log")}
	if s.stateDir == "" {
		s.stateDir = tb.TempDir()
	}
	if len(opts.PCRBanks) > 0 {
		setup := testutil.RequireTool(tb, "swtpm_setup")
		out, err := exec.CommandContext(tb.Context(), setup, "--tpm2", "--tpmstate", s.stateDir,
			"--pcr-banks", strings.Join(opts.PCRBanks, ","), "--overwrite").CombinedOutput()
		if err != nil {
			tb.Fatalf("swtpm_setup: %v\n%s", err, out)
		}
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("swtpm: stop: %v", err)
		}
		if tb.Failed() {
			if log, err := os.ReadFile(s.logPath); err == nil {
				if msg := quietLog(log); len(msg) > 0 {
					tb.Logf("swtpm log:\n%s", msg)
				}
			}
		}
	})
	if err := s.start(); err != nil {
		tb.Fatalf("swtpm: %v", err)
	}
	return s
}

// Spec returns the tpm.Open spec of the command socket.
func (s *Swtpm) Spec() string { return "swtpm:unix:" + s.SocketPath() }

// Dir returns the TPM state directory.
func (s *Swtpm) Dir() string { return s.stateDir }

// SocketPath returns the command socket's path.
func (s *Swtpm) SocketPath() string { return filepath.Join(s.sockDir, "swtpm.sock") }

// CtrlPath returns the control socket's path.
func (s *Swtpm) CtrlPath() string { return s.SocketPath() + ".ctrl" }

// TCTI returns the tpm2-tools TCTI string for this TPM (TPM2TOOLS_TCTI or
// --tcti).
func (s *Swtpm) TCTI() string { return "swtpm:path=" + s.SocketPath() }

// start binds both sockets, hands them to a new swtpm process and returns
// once the process runs; connections queue on the bound sockets until swtpm
// accepts them.
func (s *Swtpm) start() (err error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			err = errors.Join(err, f.Close())
		}
	}()
	for _, p := range []string{s.SocketPath(), s.CtrlPath()} {
		f, err := listenFile(p)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	files = append(files, logf)
	// ExtraFiles[i] becomes fd 3+i in the child.
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", "type=unixio,fd=3",
		"--ctrl", "type=unixio,fd=4",
		"--tpmstate", "dir="+s.stateDir,
		"--flags", "not-need-init,startup-clear")
	cmd.ExtraFiles = files[:2]
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.cmd = cmd
	return nil
}

// listenFile binds a unix listening socket at path (replacing a stale
// socket file) and returns it as a file to pass to a child process.
func listenFile(path string) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File() // a duplicate descriptor
	if cerr := l.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return f, nil
}

// Stop kills the swtpm process (SIGKILL, no orderly shutdown: the TPM loses
// power) and waits for it. Permanent state (seeds, persistent keys, NV)
// survives in the state directory; PCRs do not. Stopping a stopped Swtpm
// does nothing.
func (s *Swtpm) Stop() error {
	if s.cmd == nil {
		return nil
	}
	cmd := s.cmd
	s.cmd = nil
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill: %w", err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) { // killed, as intended
		return nil
	}
	return err
}

// Restart stops the process if it runs and starts a new one on the same
// state directory and socket paths: the TPM went away and came back, as
// after a power cycle (PCRs reset, resetCount incremented).
func (s *Swtpm) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start()
}

// Reboot resets the running TPM as a platform reset does: control-channel
// CMD_INIT, then TPM2_Startup(CLEAR) on the command socket. PCRs go back to
// their reset values and resetCount grows by one; permanent state stays.
func (s *Swtpm) Reboot() error {
	// CMD_INIT: u32 command, u32 init flags; the answer is a u32 result.
	var req []byte
	req = binary.BigEndian.AppendUint32(req, 2)
	req = binary.BigEndian.AppendUint32(req, 0)
	res, err := roundTrip(s.CtrlPath(), req, 4)
	if err != nil {
		return fmt.Errorf("swtpm/reboot: ctrl init: %w", err)
	}
	if rc := binary.BigEndian.Uint32(res); rc != 0 {
		return fmt.Errorf("swtpm/reboot: ctrl init: result %#x", rc)
	}
	// TPM2_Startup(TPM_SU_CLEAR): tag 0x8001, size 12, cc 0x144, su 0.
	startup := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0}
	rsp, err := roundTrip(s.SocketPath(), startup, 10)
	if err != nil {
		return fmt.Errorf("swtpm/reboot: startup: %w", err)
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		return fmt.Errorf("swtpm/reboot: startup: rc %#x", rc)
	}
	return nil
}

// roundTrip sends req on a fresh connection to the unix socket and reads n
// bytes back.
func roundTrip(path string, req []byte, n int) (_ []byte, err error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(c, out); err != nil {
		return nil, err
	}
	return out, nil
}

// quietLog drops swtpm's per-connection "Data client disconnected" lines
// (one per command, since clients connect per command) and keeps the last
// 4 KiB of the rest.
func quietLog(log []byte) []byte {
	var out []byte
	for line := range bytes.Lines(log) {
		if !bytes.Contains(line, []byte("Data client disconnected")) {
			out = append(out, line...)
		}
	}
	if len(out) > 4096 {
		out = out[len(out)-4096:]
	}
	return out
}
