package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// faultDaemon is a bpfattestd that a test expects may exit on its own.
type faultDaemon struct {
	cmd     *exec.Cmd
	metrics string // the metrics listener's address, if any
	logs    *syncBuffer
	exited  chan struct{}
	local   pb.LocalServiceClient
	remote  pb.AttestationServiceClient
}

// startFaultDaemon runs bpfattestd with args, waits until it serves and
// connects both clients. Cleanup kills it if it still runs.
func startFaultDaemon(t *testing.T, args ...string) *faultDaemon {
	t.Helper()
	d := &faultDaemon{cmd: exec.Command(daemonBinary, args...), logs: &syncBuffer{}, exited: make(chan struct{})}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		sent := false
		for sc.Scan() {
			d.logs.Write(append(sc.Bytes(), '\n'))
			var rec struct{ Msg, Listen, Metrics string }
			if !sent && json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" {
				serving <- [2]string{rec.Listen, rec.Metrics}
				sent = true
			}
		}
		d.cmd.Wait()
		close(d.exited)
		close(serving)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("bpfattestd logs:\n%s", d.logs)
		}
	})
	addrs, ok := <-serving
	listen := addrs[0]
	d.metrics = addrs[1]
	if !ok {
		t.Fatalf("bpfattestd exited before serving: %v\n%s", d.cmd.ProcessState, d.logs)
	}
	dial := func(target string) *grpc.ClientConn {
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	d.local = pb.NewLocalServiceClient(dial("unix:" + args[indexArg(args, "--local-socket")+1]))
	d.remote = pb.NewAttestationServiceClient(dial("passthrough:///" + listen))
	return d
}

func indexArg(args []string, name string) int {
	for i, a := range args {
		if a == name {
			return i
		}
	}
	return -1
}

// TestFaultTPMGone: the swtpm under a serving bpfattestd is killed. Loads
// and quotes are refused with UNAVAILABLE (nothing loads without a record),
// and as soon as the event log refuses appends the daemon exits 1 so that
// its supervisor restarts it (a restart reconciles the log against the PCR)
// — without waiting for some later finding to fail too. When the TPM is back (a power cycle), the restarted daemon
// starts a new boot's log, loads and quotes, and the old boot's log still
// reads and replays with the load acknowledged before the failure.
func TestFaultTPMGone(t *testing.T) {
	testutil.RequireRoot(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	args := []string{"--tpm", sw.Spec(), "--state-dir", state,
		"--local-socket", filepath.Join(dir, "s.sock"), "--listen", "127.0.0.1:0", "--insecure-loopback",
		"--trust", trustArg(t), "--log-format", "json", "--observer-interval", "50ms"}
	d := startFaultDaemon(t, args...)
	ctx := t.Context()
	lr, err := d.local.Load(ctx, &pb.LoadRequest{Artifact: fixture(t, signedCounter)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.remote.Quote(ctx, &pb.QuoteRequest{Nonce: newNonce(t)}); err != nil {
		t.Fatal(err)
	}

	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.local.Load(ctx, &pb.LoadRequest{Artifact: fixture(t, signedCounter)}); status.Code(err) != codes.Unavailable {
		t.Errorf("load with the TPM gone: %v, want UNAVAILABLE", err)
	}
	if _, err := d.remote.Quote(ctx, &pb.QuoteRequest{Nonce: newNonce(t)}); status.Code(err) != codes.Unavailable {
		t.Errorf("quote with the TPM gone: %v, want UNAVAILABLE", err)
	}
	select {
	case <-d.exited:
	case <-ctx.Done():
		t.Fatal("the daemon kept running with an event log it cannot append to")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != exitFailed {
		t.Errorf("exit code %d, want %d", code, exitFailed)
	}
	if !strings.Contains(d.logs.String(), "unavailable") {
		t.Errorf("the daemon's logs do not say why it stopped:\n%s", d.logs)
	}

	if err := sw.Restart(); err != nil {
		t.Fatal(err)
	}
	d2 := startFaultDaemon(t, args...)
	if _, err := d2.local.Load(ctx, &pb.LoadRequest{Artifact: fixture(t, signedCounter)}); err != nil {
		t.Fatalf("load after the TPM came back: %v", err)
	}
	ev, err := d2.remote.Quote(ctx, &pb.QuoteRequest{Nonce: newNonce(t)})
	if err != nil {
		t.Fatalf("quote after the TPM came back: %v", err)
	}
	recs, err := cel.Decode(ev.GetLog())
	if err != nil {
		t.Fatal(err)
	}
	checkReplay(t, ev, recs)
	if err := d2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-d2.exited
	if code := d2.cmd.ProcessState.ExitCode(); code != exitOK {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}

	boots, err := journal.Boots(state)
	if err != nil || len(boots) != 2 {
		t.Fatalf("boots %+v, %v: want the old and the new boot's log", boots, err)
	}
	b, err := os.ReadFile(boots[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := journal.Parse(boots[0].Path, b)
	if err != nil {
		t.Fatalf("old boot's log: %v", err)
	}
	if n := uint64(len(old.Records)); lr.GetResultRecord() >= n || old.Records[lr.GetMeasurementRecord()].Type != cel.BPFMeasurement ||
		old.Records[lr.GetResultRecord()].Type != cel.BPFLoadResult {
		t.Errorf("the load acknowledged before the failure (records %d, %d) is not in the old log (%d records)",
			lr.GetMeasurementRecord(), lr.GetResultRecord(), n)
	}
}

func (d *faultDaemon) metricsAddr(t *testing.T) string {
	t.Helper()
	if d.metrics == "" {
		t.Fatal("the daemon serves no metrics")
	}
	return d.metrics
}
