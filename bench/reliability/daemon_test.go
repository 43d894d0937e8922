package reliability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// daemon is one bpfattestd process and its two clients.
type daemon struct {
	cmd    *exec.Cmd
	logs   *tailBuffer
	exited chan struct{}
	conns  []*grpc.ClientConn
	listen string // the remote API's address
	local  pb.LocalServiceClient
	remote pb.AttestationServiceClient
}

// tailBuffer keeps the last 16 KiB of the daemon's logs, and the first 100
// warnings and errors in full.
type tailBuffer struct {
	mu     sync.Mutex
	buf    []byte
	alerts []string
}

func (b *tailBuffer) add(line []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.alerts) < 100 && (bytes.Contains(line, []byte(`"level":"ERROR"`)) || bytes.Contains(line, []byte(`"level":"WARN"`))) {
		b.alerts = append(b.alerts, string(line))
	}
	b.buf = append(b.buf, line...)
	b.buf = append(b.buf, '\n')
	if n := len(b.buf); n > 16<<10 {
		b.buf = append([]byte(nil), b.buf[n-16<<10:]...)
	}
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.alerts) == 0 {
		return string(b.buf)
	}
	return "warnings and errors:\n" + strings.Join(b.alerts, "\n") + "\nlast lines:\n" + string(b.buf)
}

// daemonArgs are the arguments of every daemon of a harness: the swtpm,
// one state directory, the fixtures' signer trusted, the remote API on a
// loopback port without TLS and without the per-client quote limit, no
// periodic sweep (quotes sweep).
func daemonArgs(t testing.TB, spec, dir string) []string {
	args := []string{
		"--tpm", spec, "--state-dir", filepath.Join(dir, "state"),
		"--local-socket", filepath.Join(dir, "bpfattestd.sock"),
		"--listen", "127.0.0.1:0", "--insecure-loopback",
		"--trust", testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem"),
		"--log-format", "json", "--observer-interval", "-1s",
	}
	for _, f := range throughputBudgets() {
		args = append(args, f[0], f[1])
	}
	return args
}

// throughputBudgets lift the budgets that would turn the throughput and
// crash harnesses' clients away: they all run as root and from one address,
// many at once, as fast as they are answered. The hostile harnesses run
// with the defaults (hostileDaemonArgs drops these).
func throughputBudgets() [][2]string {
	return [][2]string{
		{"--load-rate", "-1"},
		{"--load-rate-total", "-1"},
		{"--max-local-calls-per-peer", "256"},
		{"--max-local-calls", "256"},
		{"--max-load-bytes-per-peer", "17179869184"}, // 16 GiB: what a load reserves before it is read (the largest request) times 128
		{"--max-load-bytes", "17179869184"},
		{"--max-remote-calls", "1024"},
		{"--max-remote-calls-per-peer", "1024"},
		{"--max-quote-bytes", "17179869184"},
		{"--max-quote-bytes-per-peer", "17179869184"},
		{"--events-rate", "-1"},
		{"--events-rate-total", "-1"},
	}
}

// startDaemon starts bpfattestd with args and returns once it serves. An
// exit before serving (a log that does not reconcile with the PCR, for
// one) is returned as an error with the daemon's last logs.
func startDaemon(args []string) (*daemon, error) {
	d := &daemon{cmd: exec.Command(daemonBinary, args...), logs: &tailBuffer{}, exited: make(chan struct{})}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	serving := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		sent := false
		for sc.Scan() {
			d.logs.add(sc.Bytes())
			var rec struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if !sent && json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" {
				serving <- rec.Listen
				sent = true
			}
		}
		d.cmd.Wait()
		close(d.exited)
		close(serving)
	}()
	listen, ok := <-serving
	if !ok {
		return nil, fmt.Errorf("bpfattestd exited before serving: %v\n%s", d.cmd.ProcessState, d.logs)
	}
	d.listen = listen
	socket := args[indexOf(args, "--local-socket")+1]
	lc, err := grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, errors.Join(err, d.kill())
	}
	rc, err := grpc.NewClient("passthrough:///"+listen, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, errors.Join(err, lc.Close(), d.kill())
	}
	d.conns = []*grpc.ClientConn{lc, rc}
	d.local, d.remote = pb.NewLocalServiceClient(lc), pb.NewAttestationServiceClient(rc)
	return d, nil
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() error {
	err := d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	for _, c := range d.conns {
		c.Close()
	}
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	if ws := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		return fmt.Errorf("bpfattestd ended with %v before the kill\n%s", d.cmd.ProcessState, d.logs)
	}
	return nil
}

// stop sends SIGTERM and returns an error unless the daemon exits 0.
func (d *daemon) stop() error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-d.exited
	for _, c := range d.conns {
		c.Close()
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("bpfattestd exit code %d after SIGTERM\n%s", code, d.logs)
	}
	return nil
}

// rssKiB reads the daemon's resident set size from /proc (proc(5)).
func (d *daemon) rssKiB() (int, error) { return d.statusKiB("VmRSS") }

// statusKiB reads one of the daemon's memory figures from /proc (proc(5)):
// VmRSS, VmHWM (the peak resident size).
func (d *daemon) statusKiB(field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}
