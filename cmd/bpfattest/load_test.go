package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/measure"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// publicCopy copies a fixture where an unprivileged helper can read it.
func publicCopy(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(testutil.LskelFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, filepath.Base(rel))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadCLI drives `bpfattest load` against a real bpfattestd: root and
// a member of the local group (by a supplementary group) load a signed
// fixture and see the verdict, record numbers and program IDs and tags;
// an unsigned fixture is refused with exit 1 and its records; a user
// outside the group is refused, by the socket's mode and, with the mode
// opened up, by the peer-credential check.
func TestLoadCLI(t *testing.T) {
	a := startAgentProc(t, "--trust", testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem"), "--local-group", "100",
		"--listen", "127.0.0.1:0", "--insecure-loopback")
	signed := publicCopy(t, "headers/counter.signed.lskel.h")

	t.Run("root", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := runLoad(t.Context(), []string{signed, "--socket", a.socket}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
		out := stdout.String()
		if fieldOf(t, out, "verdict") != "OK" || fieldOf(t, out, "outcome") != "loaded" {
			t.Errorf("output:\n%s", out)
		}
		if m, r := atou(t, fieldOf(t, out, "measurement record")), atou(t, fieldOf(t, out, "result record")); r <= m {
			t.Errorf("result record %d not after measurement record %d", r, m)
		}
		prog := fieldOf(t, out, "program")
		if !strings.HasPrefix(prog, "id ") || !strings.Contains(prog, " tag ") || !strings.Contains(prog, "count_sys_enter") {
			t.Errorf("program line %q", prog)
		}
	})

	t.Run("group member", func(t *testing.T) {
		code, stdout, stderr := runAs(t, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{100}},
			"load", signed, "--socket", a.socket)
		if code != exitOK {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		if fieldOf(t, stdout, "outcome") != "loaded" {
			t.Errorf("output:\n%s", stdout)
		}
		// The measurement names the requester as the kernel saw it.
		m := measurementAt(t, a, atou(t, fieldOf(t, stdout, "measurement record")))
		if r := m.Requester; r == nil || r.UID != 65534 || r.GID != 65534 || r.PID == 0 || filepath.Base(r.Exe) != "cli" || len(r.ExeSHA256) != 32 {
			t.Errorf("requester %+v, want uid/gid 65534 running the helper", r)
		}
	})

	t.Run("refused", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := runLoad(t.Context(), []string{publicCopy(t, "headers/counter.lskel.h"), "--socket", a.socket}, &stdout, &stderr)
		if code != exitFailed {
			t.Fatalf("exit %d, want %d\n%s%s", code, exitFailed, stdout.String(), stderr.String())
		}
		if fieldOf(t, stdout.String(), "verdict") != "UNSIGNED" || fieldOf(t, stdout.String(), "outcome") != "refused" {
			t.Errorf("output:\n%s", stdout.String())
		}
		if !strings.Contains(stderr.String(), "FailedPrecondition") {
			t.Errorf("stderr: %s", stderr.String())
		}
	})

	stranger := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{4}}
	t.Run("stranger", func(t *testing.T) {
		code, stdout, stderr := runAs(t, stranger, "load", signed, "--socket", a.socket)
		if code != exitFailed || stdout != "" {
			t.Fatalf("exit %d, want %d\n%s%s", code, exitFailed, stdout, stderr)
		}
		if !strings.Contains(stderr, "permission denied") {
			t.Errorf("stderr: %s", stderr)
		}
	})

	t.Run("stranger on an open socket", func(t *testing.T) {
		if err := os.Chmod(a.socket, 0o666); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runAs(t, stranger, "load", signed, "--socket", a.socket)
		if code != exitFailed || stdout != "" {
			t.Fatalf("exit %d, want %d\n%s%s", code, exitFailed, stdout, stderr)
		}
		if !strings.Contains(stderr, "PermissionDenied") {
			t.Errorf("stderr: %s", stderr)
		}
	})
}

// measurementAt reads record n from the agent's Events stream and parses
// it as a measurement.
func measurementAt(t *testing.T, a *agentProc, n uint64) *measure.Measurement {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+a.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pb.NewAttestationServiceClient(conn).Events(t.Context(), &pb.EventsRequest{FromRecord: n})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := cel.DecodeRecord(e.GetRecord())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Type != cel.BPFMeasurement {
		t.Fatalf("record %d is %v, not a measurement", n, rec.Type)
	}
	m, err := measure.ParseMeasurement(rec.Content)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"no file":      {},
		"two files":    {"a", "b"},
		"missing file": {filepath.Join(t.TempDir(), "none.lskel.h")},
		"bad flag":     {"--no-such-flag", "x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runLoad(t.Context(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", name, code, exitUsage)
		}
	}
}

// TestLoadWaitsAtBudget: root's loads each reserve the largest request's
// bytes before they are read, and an agent that holds root to one such
// request at a time turns concurrent loads away (RESOURCE_EXHAUSTED,
// before any work). `bpfattest load` waits and tries again (--wait), so
// eight loads started together, as units at boot are, all load; with
// --wait 0 some are turned away, and say why.
func TestLoadWaitsAtBudget(t *testing.T) {
	const artifactMax = 1 << 20
	a := startAgentProc(t, "--trust", testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem"),
		"--max-artifact-size", strconv.Itoa(artifactMax),
		"--max-load-bytes-per-peer", strconv.Itoa(artifactMax+64<<10), // one request's reservation
		"--load-rate", "-1", "--load-rate-total", "-1")
	signed := publicCopy(t, "headers/counter.signed.lskel.h")
	run := func(wait string) (codes []int, errs []string) {
		codes, errs = make([]int, 8), make([]string, 8)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Go(func() {
				var stdout, stderr bytes.Buffer
				codes[i] = runLoad(t.Context(), []string{signed, "--socket", a.socket, "--wait", wait}, &stdout, &stderr)
				errs[i] = stderr.String()
			})
		}
		wg.Wait()
		return codes, errs
	}
	codes, errs := run("60s")
	for i, c := range codes {
		if c != exitOK {
			t.Errorf("load %d with --wait: exit %d: %s", i, c, errs[i])
		}
	}
	// Without waiting, the budget shows: some of eight concurrent loads
	// are turned away (tried a few times: a fast agent may serve a round
	// one by one).
	for round := 0; ; round++ {
		codes, errs := run("0")
		refused := 0
		for i, c := range codes {
			switch {
			case c == exitOK:
			case c == exitFailed && strings.Contains(errs[i], "ResourceExhausted") && strings.Contains(errs[i], "load_bytes"):
				refused++
			default:
				t.Fatalf("load %d with --wait 0: exit %d: %s", i, c, errs[i])
			}
		}
		if refused > 0 {
			t.Logf("--wait 0: %d of 8 concurrent loads turned away at the budget (round %d)", refused, round)
			break
		}
		if round == 20 {
			t.Fatal("no concurrent load was ever turned away at a budget of one request: the test proves nothing")
		}
	}
}
