package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
	bpfattestv1 "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// logPCR is the PCR the pre-built log extends (the agent's default).
const logPCR = 14

// BenchmarkAgentMemory starts a real bpfattestd on a swtpm whose PCR 14
// already holds a log of this boot, 100,000 records unless -memory-records
// says otherwise (built here and extended record by record into the swtpm:
// appending through the agent would cost an fsync per record), and reports the daemon's resident memory from
// /proc/PID/status: after start-up, after ten quotes of the log's tail (a
// verifier that resumes), after one quote of the whole log (a new
// verifier: the evidence carries all the records in one message), and
// the peak (VmHWM).
// Run it once (-benchtime 1x): the op is the whole scenario.
func BenchmarkAgentMemory(b *testing.B) {
	testutil.RequireRoot(b)
	goTool := testutil.RequireTool(b, "go")
	sw := tpmtest.StartSwtpm(b, tpmtest.SwtpmOptions{})
	dir := b.TempDir()
	bin := filepath.Join(dir, "bpfattestd")
	build := exec.CommandContext(b.Context(), goTool, "build", "-o", bin, "./cmd/bpfattestd")
	build.Dir = testutil.RepoRoot(b)
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "state")
	logBytes := buildLog(b, sw.Spec(), state)
	if *memoryAgainst != "" {
		compareDaemons(b, []string{*memoryAgainst, bin}, sw.Spec(), state)
		return
	}
	for b.Loop() {
		m := runDaemon(b, bin, sw.Spec(), state)
		b.ReportMetric(float64(logBytes)/(1<<20), "log-MiB")
		for _, k := range slices.Sorted(maps.Keys(m)) {
			b.ReportMetric(m[k], k)
		}
	}
}

var (
	memoryAgainst = flag.String("memory-against", "", "BenchmarkAgentMemory: another bpfattestd binary to alternate with this tree's")
	memoryRounds  = flag.Int("memory-rounds", 5, "BenchmarkAgentMemory: rounds of the alternation with -memory-against")
	memRecords    = flag.Uint64("memory-records", 100_000, "BenchmarkAgentMemory: records in the log the daemon starts on, after its boot header")
)

// compareDaemons runs the scenario with each binary in turn (A, B, A, B
// …) for -memory-rounds rounds on the same log, and reports min, median
// and max of the resident sizes per binary: "against-" is the other
// binary, "tree-" this tree's.
func compareDaemons(b *testing.B, bins []string, spec, state string) {
	names := []string{"against", "tree"}
	runs := make([]map[string][]float64, len(bins))
	for i := range runs {
		runs[i] = map[string][]float64{}
	}
	for round := range *memoryRounds {
		line := fmt.Sprintf("round %d", round)
		for i, bin := range bins {
			m := runDaemon(b, bin, spec, state)
			line += fmt.Sprintf("; %s: start %.1f, tail %.1f (anon %.1f), VmHWM %.1f MiB",
				names[i], m["start-VmRSS-MiB"], m["tail-VmRSS-MiB"], m["tail-RssAnon-MiB"], m["VmHWM-MiB"])
			for k, v := range m {
				runs[i][k] = append(runs[i][k], v)
			}
		}
		b.Log(line) // one line a round: the benchmark's log keeps ten
	}
	for i := range bins {
		for _, k := range []string{"start-VmRSS-MiB", "tail-VmRSS-MiB", "tail-RssAnon-MiB"} {
			v := slices.Sorted(slices.Values(runs[i][k]))
			b.ReportMetric(v[0], names[i]+"-min-"+k)
			b.ReportMetric(v[len(v)/2], names[i]+"-median-"+k)
			b.ReportMetric(v[len(v)-1], names[i]+"-max-"+k)
		}
	}
}

// runDaemon starts the daemon on the state directory, waits for it to
// serve, measures, and stops it. It returns the figures by metric name.
func runDaemon(b *testing.B, bin, spec, state string) map[string]float64 {
	addr := freeLoopback(b)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--tpm", spec, "--state-dir", state,
		"--local-socket", filepath.Join(state, "local.sock"), "--listen", addr, "--insecure-loopback",
		"--observer-interval", "-1s",
		// One reader of the whole log, as fast as it is sent.
		"--events-rate", "-1", "--events-rate-total", "-1",
		// The whole 40 MiB log in one quote, past the default 16 MiB: the
		// cost of that path is what the full-log metrics measure.
		"--max-quote-log", "1073741824")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), `msg=serving`) {
			break
		}
	}
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "msg=serving") {
		cmd.Wait()
		b.Fatalf("daemon did not start:\n%s", strings.Join(lines, "\n"))
	}
	startup := time.Since(start)
	go func() { // keep draining the log
		for sc.Scan() {
		}
	}()
	afterStart := procStatus(b, cmd.Process.Pid)

	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := bpfattestv1.NewAttestationServiceClient(conn)
	status, err := client.Quote(ctx, &bpfattestv1.QuoteRequest{Nonce: nonceFor(0, 0), FromRecord: *memRecords},
		grpc.WaitForReady(true))
	if err != nil {
		b.Fatalf("quote: %v", err)
	}
	end := status.GetFromRecord() + uint64(countLog(b, status.GetLog()))
	for i := range 10 {
		if _, err := client.Quote(ctx, &bpfattestv1.QuoteRequest{Nonce: nonceFor(1, i), FromRecord: end}); err != nil {
			b.Fatalf("quote: %v", err)
		}
	}
	afterTail := procStatus(b, cmd.Process.Pid)
	// A reader of the whole log through Events: streamed a chunk at a
	// time, so the peak must not move with the log's length.
	events, err := client.Events(ctx, &bpfattestv1.EventsRequest{FromRecord: 0})
	if err != nil {
		b.Fatalf("events: %v", err)
	}
	streamed := 0
	for {
		if _, err := events.Recv(); err == io.EOF {
			break
		} else if err != nil {
			b.Fatalf("events: %v", err)
		}
		streamed++
	}
	afterEvents := procStatus(b, cmd.Process.Pid)
	full, err := client.Quote(ctx, &bpfattestv1.QuoteRequest{Nonce: nonceFor(2, 0), FromRecord: 0}, grpc.MaxCallRecvMsgSize(1<<30))
	if err != nil {
		b.Fatalf("quote: %v", err)
	}
	records := countLog(b, full.GetLog())
	// Each quote first sweeps the kernel, which other processes share: a
	// program they loaded meanwhile adds records. The stream holds at
	// least the log a quote before it covered, at most the one after.
	if streamed < int(end) || streamed > records {
		b.Errorf("events streamed %d records; the log held %d before and %d after", streamed, end, records)
	}
	afterFull := procStatus(b, cmd.Process.Pid)
	cancel()
	if err := cmd.Wait(); err != nil && ctx.Err() == nil {
		b.Errorf("daemon: %v", err)
	}
	return map[string]float64{
		"records":          float64(records),
		"startup-s":        startup.Seconds(),
		"start-VmRSS-MiB":  afterStart["VmRSS"],
		"tail-VmRSS-MiB":   afterTail["VmRSS"],
		"tail-RssAnon-MiB": afterTail["RssAnon"],
		"tail-RssFile-MiB": afterTail["RssFile"],
		"events-VmHWM-MiB": afterEvents["VmHWM"],
		"full-VmRSS-MiB":   afterFull["VmRSS"],
		"VmHWM-MiB":        afterFull["VmHWM"],
	}
}

// logBuilder encodes records and extends each into the TPM's PCR.
type logBuilder struct {
	tb    testing.TB
	dev   *tpm.Device
	banks []crypto.Hash
	buf   bytes.Buffer
	next  uint64
}

func (l *logBuilder) add(t cel.ContentType, content []byte) uint64 {
	r, err := cel.NewRecord(l.next, logPCR, l.banks, t, content)
	if err != nil {
		l.tb.Fatal(err)
	}
	ds := make(map[crypto.Hash][]byte, len(r.Digests))
	for _, d := range r.Digests {
		ds[d.Hash] = d.Value
	}
	if err := l.dev.Extend(logPCR, ds); err != nil {
		l.tb.Fatal(err)
	}
	enc, err := r.MarshalBinary()
	if err != nil {
		l.tb.Fatal(err)
	}
	l.buf.Write(enc)
	l.next++
	return r.RecNum
}

// buildLog writes the current boot's log into state, named as the journal
// names it, with a boot header and -memory-records more records, extending the
// swtpm's PCR with each; it returns the log's size. Half the records are
// measured loads (the measurement of the signed counter fixture, then a
// "refused" result), half unmeasured programs that were later unloaded:
// after them the kernel inventory the agent rebuilds is empty, so start-up
// appends only its own few records.
func buildLog(tb testing.TB, spec, state string) int {
	dev, err := tpm.Open(tb.Context(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	defer dev.Close()
	ci, err := dev.ClockInfo()
	if err != nil {
		tb.Fatal(err)
	}
	start, err := dev.ReadPCR(logPCR)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		tb.Fatal(err)
	}
	bootID := strings.TrimSpace(string(raw))
	banks, _ := cel.SortBanks(dev.Banks())
	l := &logBuilder{tb: tb, dev: dev, banks: banks}
	boot := cel.BootInfo{BootID: bootID, ResetCount: ci.ResetCount, RestartCount: ci.RestartCount, Clock: ci.Clock,
		PCR: logPCR, Start: start, Time: time.Now()}
	l.add(cel.BootHeader, marshal(tb, boot.MarshalBinary))
	mb := marshal(tb, counterMeasurement(tb).MarshalBinary)
	msum := sha256.Sum256(mb)
	for i := uint32(0); l.next <= *memRecords; i++ {
		if i%2 == 0 {
			mrec := l.add(cel.BPFMeasurement, mb)
			res := measure.LoadResult{MeasurementRecord: mrec, MeasurementSHA256: msum, Outcome: measure.OutcomeRefused}
			l.add(cel.BPFLoadResult, marshal(tb, res.MarshalBinary))
			continue
		}
		p := measure.KernelProgram{Discovery: measure.DiscoveredObserved, ID: 1<<30 + i, Type: 17, Name: "bench_prog",
			Tag: [8]byte{byte(i), byte(i >> 8), byte(i >> 16)}, LoadTimeNS: uint64(i) * 1000}
		prec := l.add(cel.BPFUnmeasured, marshal(tb, p.MarshalBinary))
		u := measure.Unloaded{ID: p.ID, Tag: p.Tag, Name: p.Name, Record: prec}
		l.add(cel.BPFUnloaded, marshal(tb, u.MarshalBinary))
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		tb.Fatal(err)
	}
	name := fmt.Sprintf("boot-%010d-%s.cel", ci.ResetCount, bootID)
	if err := os.WriteFile(filepath.Join(state, name), l.buf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return l.buf.Len()
}

func marshal(tb testing.TB, f func() ([]byte, error)) []byte {
	tb.Helper()
	b, err := f()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// counterMeasurement measures the signed counter fixture as the agent
// would, trusting the fixtures' test signing certificate.
func counterMeasurement(tb testing.TB) *measure.Measurement {
	tb.Helper()
	src, err := os.ReadFile(testutil.LskelFile(tb, "headers/counter.signed.lskel.h"))
	if err != nil {
		tb.Fatal(err)
	}
	art, err := lskel.Load(src)
	if err != nil {
		tb.Fatal(err)
	}
	trust, err := cms.LoadTrust(testutil.LskelFile(tb, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		tb.Fatal(err)
	}
	insp, err := measure.Inspect(art, measure.Options{Trust: trust})
	if err != nil {
		tb.Fatal(err)
	}
	m := insp.Measurement
	m.Requester = &measure.Requester{UID: 0, PID: 4242, Exe: "/usr/bin/loader"}
	return &m
}

// procStatus reads the memory fields (Vm…, Rss…) of /proc/PID/status, in
// MiB.
func procStatus(tb testing.TB, pid int) map[string]float64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(raw)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "Vm") && !strings.HasPrefix(k, "Rss") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			tb.Fatalf("%s: %v", line, err)
		}
		out[k] = n / 1024
	}
	return out
}

// freeLoopback returns a loopback address with a port free at the time.
func freeLoopback(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}

// countLog returns the number of records in an encoded log.
func countLog(tb testing.TB, log []byte) int {
	tb.Helper()
	recs, err := cel.Decode(log)
	if err != nil {
		tb.Fatal(err)
	}
	return len(recs)
}
