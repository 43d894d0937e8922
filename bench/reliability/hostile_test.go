package reliability

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// The hostile local clients run as other uids, in group hostileGID: the
// test binary starts itself again with hostileLoaderEnv set (TestMain).
const (
	hostileLoaderEnv = "BPFATTEST_HOSTILE_LOADER"
	hostileGID       = 4242
	hostileUIDs      = 4 // processes, one uid each, sharing -hostile-loaders clients
	eventsPeers      = 20
)

// remoteTLS is the remote API's PKI: one CA, the agent's certificate, and
// a client certificate per peer.
type remoteTLS struct {
	ca, server *testutil.Cert
}

func newRemoteTLS(t *testing.T) *remoteTLS {
	ca := testutil.NewCert(t, "verifiers-ca", nil, false)
	return &remoteTLS{ca: ca, server: testutil.NewCert(t, "agent", ca, true)}
}

// args are the daemon's TLS arguments.
func (r *remoteTLS) args() []string {
	return []string{"--tls-cert", r.server.CertFile, "--tls-key", r.server.KeyFile, "--client-ca", r.ca.CertFile}
}

// dial connects as a client with certificate cn from source address src
// (a loopback address: the per-host limits count by it).
func (r *remoteTLS) dial(t *testing.T, addr, cn, src string) *grpc.ClientConn {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(r.ca.Cert)
	cert := testutil.NewCert(t, cn, r.ca, false)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert.TLS()}, MinVersion: tls.VersionTLS13}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return d.DialContext(ctx, "tcp", a)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// hostileDaemonArgs are daemonArgs with the remote API on mutual TLS, the
// per-client quote limit at its default, and the group's members on the
// local socket.
func hostileDaemonArgs(t *testing.T, spec, dir string, r *remoteTLS) []string {
	var args []string
	in := daemonArgs(t, spec, dir)
	lifted := map[string]bool{}
	for _, f := range throughputBudgets() {
		lifted[f[0]] = true
	}
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == "--insecure-loopback":
			continue
		case lifted[in[i]]:
			i++
			continue
		}
		args = append(args, in[i])
	}
	return append(append(args, r.args()...), "--local-group", strconv.Itoa(hostileGID))
}

// sharedDir is a directory the hostile uids can reach (the socket, the
// test binary and the artifact are in it).
func sharedDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "bpfattest-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// codeCounts counts answers by gRPC code.
type codeCounts struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *codeCounts) add(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[status.Code(err).String()]++
}

func (c *codeCounts) get(code codes.Code) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[code.String()]
}

func (c *codeCounts) total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.n {
		n += v
	}
	return n
}

func (c *codeCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.n)
}

// TestHostile runs one bpfattestd on a swtpm, its remote API on mutual TLS
// 1.3, against hostile and runaway clients for -hostile-duration (10 s by
// default; the documented run is 60 s):
//
//   - -hostile-streams Events streams (1,000) from record 0, from 20 client
//     certificates on 20 source addresses: half never read (each held 20 s,
//     past the stall timeout, then opened again), half read to the end and
//     open again at once; a refused stream is asked again after 50 ms;
//   - an Identity flood: 8 callers on one certificate, as fast as answered;
//   - -hostile-loaders local clients (64) in -hostileUIDs processes, each
//     its own uid in the local group, loading an unsigned artifact (measured
//     and refused) as fast as they are answered;
//
// while a well-behaved verifier (its own certificate) quotes from where it
// stopped every 500 ms, ingesting each quote into the ledger (the log must
// replay to it), and root loads the signed fixture every 250 ms. Before the
// run the log is lengthened with -hostile-pregrow refused loads recorded one
// by one (a first daemon, every limit off), so Events has a log to stream.
//
// It logs the daemon's resident memory (sampled ten times a second, and
// VmHWM),
// the verifier's quote and root's load latencies, and what the attackers
// got; it fails on any error of the well-behaved clients, on any log that
// does not replay or misses an acknowledged load or quote, on the log on
// disk not matching the PCR (`bpfattest log --verify-against-pcr`), and
// unless every refusal a hostile client was answered is counted in the log
// (a refused result, or a "refusals counted" record). In runs of a minute
// or more it also fails on a peak RSS of 128 MiB or more, or a quote or
// load p99 of 1 s or more.
func TestHostile(t *testing.T) {
	testutil.RequireRoot(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := sharedDir(t)
	pins := bpffs(t)
	r := newRemoteTLS(t)
	unsigned, err := os.ReadFile(testutil.LskelFile(t, "headers/counter.lskel.h"))
	if err != nil {
		t.Fatal(err)
	}
	artifact := filepath.Join(dir, "unsigned.lskel.h")
	if err := os.WriteFile(artifact, unsigned, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "reliability.test")
	if err := copyFile(self, helper); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	var issued atomic.Int64

	// The log before the run: refused loads, each recorded.
	args := hostileDaemonArgs(t, sw.Spec(), dir, r)
	pre, err := startDaemon(append(slices.Clone(args), "--refusal-log-rate", "-1", "--load-rate", "-1", "--load-rate-total", "-1",
		"--max-local-calls-per-peer", "64", "--max-load-bytes-per-peer", "1073741824", "--max-load-bytes", "1073741824"))
	if err != nil {
		t.Fatal(err)
	}
	var preWG sync.WaitGroup
	var preNext atomic.Int64
	var preErr atomic.Value
	for range 8 {
		preWG.Go(func() {
			for preNext.Add(1) <= int64(*hostilePregrow) {
				issued.Add(1)
				_, err := pre.local.Load(t.Context(), &pb.LoadRequest{Artifact: unsigned})
				if status.Code(err) != codes.FailedPrecondition {
					preErr.Store(fmt.Errorf("pre-run refused load: %v, want FailedPrecondition", err))
					return
				}
			}
		})
	}
	preWG.Wait()
	if err, _ := preErr.Load().(error); err != nil {
		pre.kill()
		t.Fatal(err)
	}
	if err := pre.stop(); err != nil {
		t.Fatal(err)
	}

	d, err := startDaemon(args)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			d.kill()
			t.Logf("bpfattestd logs:\n%s", d.logs)
		}
	}()
	startKiB, _ := d.rssKiB()
	verifier := pb.NewAttestationServiceClient(r.dial(t, d.listen, "verifier", "127.0.0.1"))
	d.remote = verifier // startDaemon's client speaks no TLS
	ev, err := verifier.Quote(t.Context(), &pb.QuoteRequest{Nonce: nonce()})
	if err != nil {
		t.Fatalf("first quote: %v", err)
	}
	if err := l.ingest(ev); err != nil {
		t.Fatal(err)
	}
	logRecords := l.Len()

	var errCount atomic.Int64
	fail := func(format string, args ...any) {
		if errCount.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), *hostileDuration)
	defer cancel()
	start := time.Now()
	var attackers, good sync.WaitGroup

	// Events: half the peers stall, half read.
	var evAdmitted, evRefused, evCut, evRecords atomic.Int64
	perPeer := max(*hostileStreams/eventsPeers, 1)
	for p := range eventsPeers {
		c := pb.NewAttestationServiceClient(r.dial(t, d.listen, fmt.Sprintf("events-%d", p), fmt.Sprintf("127.0.1.%d", p+1)))
		stall := p < eventsPeers/2
		for range perPeer {
			attackers.Go(func() {
				for ctx.Err() == nil {
					sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
					stream, err := c.Events(sctx, &pb.EventsRequest{})
					if err != nil {
						scancel()
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if stall {
						<-sctx.Done()
						scancel()
						continue
					}
					n := 0
					for {
						_, err = stream.Recv()
						if err != nil {
							break
						}
						n++
					}
					scancel()
					evRecords.Add(int64(n))
					switch {
					case err == io.EOF:
						evAdmitted.Add(1)
					case status.Code(err) == codes.ResourceExhausted:
						evRefused.Add(1)
						time.Sleep(50 * time.Millisecond)
					case ctx.Err() == nil:
						evCut.Add(1)
					}
				}
			})
		}
	}

	// The Identity flood.
	var identity codeCounts
	flood := pb.NewAttestationServiceClient(r.dial(t, d.listen, "flood", "127.0.2.1"))
	for range 8 {
		attackers.Go(func() {
			for ctx.Err() == nil {
				_, err := flood.Identity(ctx, &pb.IdentityRequest{})
				if ctx.Err() == nil {
					identity.add(err)
				}
			}
		})
	}

	// The hostile loaders, as other uids.
	per := max(*hostileLoaders/hostileUIDs, 1)
	loaders := make([]*exec.Cmd, hostileUIDs)
	outs := make([]*os.File, hostileUIDs)
	for i := range loaders {
		cmd := exec.Command(helper)
		cmd.Env = append(os.Environ(), hostileLoaderEnv+"=1", "HOSTILE_SOCKET="+args[indexOf(args, "--local-socket")+1],
			"HOSTILE_ARTIFACT="+artifact, "HOSTILE_DURATION="+hostileDuration.String(), "HOSTILE_CLIENTS="+strconv.Itoa(per))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(5001 + i), Gid: hostileGID}}
		f, err := os.CreateTemp(t.TempDir(), "loader")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr, outs[i] = f, f, f
		if err := cmd.Start(); err != nil {
			t.Fatalf("hostile loader: %v", err)
		}
		loaders[i] = cmd
	}

	// The well-behaved verifier and root's loads.
	var quoteLat, loadLat []time.Duration
	var quotesDone, loadsDone atomic.Int64
	good.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			t0 := time.Now()
			ev, err := verifier.Quote(ctx, &pb.QuoteRequest{Nonce: nonce(), FromRecord: l.Len()})
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				fail("verifier: quote: %v", err)
				return
			}
			quoteLat = append(quoteLat, time.Since(t0))
			quotesDone.Add(1)
			if err := l.ingest(ev); err != nil {
				fail("verifier: %v", err)
				return
			}
			if _, err := l.settle(); err != nil {
				fail("verifier: %v", err)
				return
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	})
	signed := fixture(t)
	good.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			pinDir := filepath.Join(pins, fmt.Sprintf("root-%d", i))
			if err := os.Mkdir(pinDir, 0o700); err != nil {
				fail("root: %v", err)
				return
			}
			issued.Add(1)
			t0 := time.Now()
			resp, err := d.local.Load(context.Background(), &pb.LoadRequest{Artifact: signed, PinDir: pinDir})
			if err != nil || resp.GetOutcome() != "loaded" {
				fail("root: load %d: %v (outcome %q)", i, err, resp.GetOutcome())
				return
			}
			loadLat = append(loadLat, time.Since(t0))
			loadsDone.Add(1)
			l.ackLoad(resp)
			for _, p := range resp.GetPinned() {
				os.Remove(p)
			}
			os.Remove(pinDir)
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	})

	// Resident memory ten times a second, and the peak (VmHWM) as it
	// rises, with what the clients had done by then.
	var rss []rssSample
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastHWM := 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if hwm, err := d.statusKiB("VmHWM"); err == nil && hwm > lastHWM+8<<10 && *verbose {
				t.Logf("%v: VmHWM %d KiB; events %d/%d/%d, identity %s, %d quotes, %d root loads", time.Since(start).Round(100*time.Millisecond), hwm,
					evAdmitted.Load(), evRefused.Load(), evCut.Load(), &identity, quotesDone.Load(), loadsDone.Load())
				lastHWM = hwm
			}
			if kib, err := d.rssKiB(); err == nil {
				rss = append(rss, rssSample{time.Since(start), kib})
				if *verbose && len(rss)%100 == 0 {
					t.Logf("%v: rss %d KiB, events %d/%d/%d, identity %s", time.Since(start).Round(time.Second), kib,
						evAdmitted.Load(), evRefused.Load(), evCut.Load(), &identity)
				}
			}
		}
	}
	hwmAt := func(when string) {
		if hwm, err := d.statusKiB("VmHWM"); err == nil && *verbose {
			t.Logf("%s: VmHWM %d KiB", when, hwm)
		}
	}
	hwmAt("end of the run")
	good.Wait()
	hwmAt("well-behaved clients done")
	attackers.Wait()
	hwmAt("remote attackers done")
	elapsed := time.Since(start)
	var loads codeCounts
	for i, cmd := range loaders {
		err := cmd.Wait()
		out, _ := os.ReadFile(outs[i].Name())
		if err != nil {
			t.Fatalf("hostile loader %d: %v\n%s", i, err, tail(out))
		}
		var counts map[string]int64
		if err := json.Unmarshal(lastLineBytes(out), &counts); err != nil {
			t.Fatalf("hostile loader %d: %v\n%s", i, err, tail(out))
		}
		loads.mu.Lock()
		if loads.n == nil {
			loads.n = map[string]int64{}
		}
		for k, v := range counts {
			loads.n[k] += v
		}
		loads.mu.Unlock()
	}
	issued.Add(loads.total())
	hwmAt("hostile loaders done")
	hwm, _ := d.statusKiB("VmHWM")
	if errCount.Load() > 0 {
		t.Fatalf("%d errors", errCount.Load())
	}

	// Every refusal a hostile client was answered is in the log.
	if err := verify(t.Context(), d, l, &issued); err != nil {
		t.Fatal(err)
	}
	if n := loads.total() - loads.get(codes.FailedPrecondition) - loads.get(codes.ResourceExhausted); n != 0 {
		t.Errorf("hostile loads answered other than refused (FailedPrecondition) or throttled (ResourceExhausted): %s", &loads)
	}
	st := l.Stats()
	answered := int64(*hostilePregrow) + loads.get(codes.FailedPrecondition) + loads.get(codes.ResourceExhausted)
	inLog := int64(st.Refused) + int64(st.CountedRefused) + int64(st.CountedThrottled)
	if answered != inLog {
		t.Errorf("%d refusals answered (%d before the run, %s), %d in the log (%d refused results, %d counted refused, %d counted throttled)",
			answered, *hostilePregrow, &loads, inLog, st.Refused, st.CountedRefused, st.CountedThrottled)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cliBinary, "log", "--dir", args[indexOf(args, "--state-dir")+1],
		"--verify-against-pcr", "--tpm", sw.Spec()).CombinedOutput()
	if err != nil {
		t.Fatalf("bpfattest log --verify-against-pcr: %v\n%s", err, tail(out))
	}

	peak := slices.MaxFunc(rss, func(a, b rssSample) int { return a.kib - b.kib })
	t.Logf("%v: log of %d records at the start; Events: %d streams read to the end (%d records), %d refused, %d cut; "+
		"Identity flood: %s (%.0f/s answered); hostile loads (%d clients): %s (%.0f/s answered)",
		elapsed.Round(time.Second), logRecords, evAdmitted.Load(), evRecords.Load(), evRefused.Load(), evCut.Load(),
		&identity, float64(identity.total())/elapsed.Seconds(), *hostileLoaders, &loads, float64(loads.total())/elapsed.Seconds())
	t.Logf("well-behaved: %d quotes (p50 %v, p99 %v, max %v), %d root loads (p50 %v, p99 %v, max %v)",
		len(quoteLat), pct(quoteLat, 50), pct(quoteLat, 99), pct(quoteLat, 100), len(loadLat), pct(loadLat, 50), pct(loadLat, 99), pct(loadLat, 100))
	t.Logf("rss: start %d KiB, peak %d KiB at %v, end %d KiB; VmHWM %d KiB; log %d records (%d refused results, %d refusals and %d throttled loads counted, %d observer records: other processes' programs on the shared kernel); CLI: %s",
		startKiB, peak.kib, peak.at.Round(time.Second), rss[len(rss)-1].kib, hwm, st.Records, st.Refused, st.CountedRefused, st.CountedThrottled, st.Observed, lastLine(out))
	if elapsed >= time.Minute {
		if hwm >= 128<<10 {
			t.Errorf("peak resident memory %d KiB, want under 128 MiB", hwm)
		}
		if p := pct(quoteLat, 99); p >= time.Second {
			t.Errorf("verifier's quote p99 %v, want under 1 s", p)
		}
		if p := pct(loadLat, 99); p >= time.Second {
			t.Errorf("root's load p99 %v, want under 1 s", p)
		}
	}
}

// hostileLoader is the hostile local client process: HOSTILE_CLIENTS
// connections to HOSTILE_SOCKET, each loading HOSTILE_ARTIFACT as fast as
// it is answered for HOSTILE_DURATION. It prints the answers by gRPC code
// as one JSON object.
func hostileLoader() int {
	artifact, err := os.ReadFile(os.Getenv("HOSTILE_ARTIFACT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dur, err := time.ParseDuration(os.Getenv("HOSTILE_DURATION"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	clients, err := strconv.Atoi(os.Getenv("HOSTILE_CLIENTS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var counts codeCounts
	var wg sync.WaitGroup
	var dialErr atomic.Value
	for range clients {
		conn, err := grpc.NewClient("unix:"+os.Getenv("HOSTILE_SOCKET"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer conn.Close()
		c := pb.NewLocalServiceClient(conn)
		wg.Go(func() {
			for ctx.Err() == nil {
				// Each request runs to its answer: a refusal the
				// client was not told of cannot be counted.
				_, err := c.Load(context.Background(), &pb.LoadRequest{Artifact: artifact})
				if status.Code(err) == codes.Unavailable {
					dialErr.Store(err)
					return
				}
				counts.add(err)
			}
		})
	}
	wg.Wait()
	if err, _ := dialErr.Load().(error); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, _ := json.Marshal(counts.n)
	fmt.Println(string(b))
	return 0
}

func lastLineBytes(b []byte) []byte { return []byte(lastLine(b)) }

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return errors.Join(os.WriteFile(to, b, 0o755), os.Chmod(to, 0o755))
}

// TestIdleConns holds -idle-conns TCP connections (1,000) against the
// remote API (mutual TLS 1.3), from 63 loopback addresses (at most 16
// each, the per-host default), sending nothing; a connection the agent
// closes is opened again after -idle-redial (1 s; 0: at once, a flood of
// connections rather than idle ones). Meanwhile a verifier dials afresh ten
// times and asks for a quote each time. It logs the time from dial to
// answer and the connections the agent closed, and fails when a quote
// fails or (with -idle-target) takes that long or longer.
func TestIdleConns(t *testing.T) {
	testutil.RequireRoot(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := sharedDir(t)
	r := newRemoteTLS(t)
	d, err := startDaemon(hostileDaemonArgs(t, sw.Spec(), dir, r))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			d.kill()
			t.Logf("bpfattestd logs:\n%s", d.logs)
		}
	}()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var dials, closed atomic.Int64
	for i := range *idleConns {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 3, byte(i/16+1))}
		wg.Go(func() {
			dl := net.Dialer{LocalAddr: src}
			buf := make([]byte, 1)
			for ctx.Err() == nil {
				c, err := dl.DialContext(ctx, "tcp", d.listen)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				dials.Add(1)
				stop := context.AfterFunc(ctx, func() { c.Close() })
				_, err = c.Read(buf) // returns when the agent closes it
				stop()
				c.Close()
				if ctx.Err() == nil && err != nil {
					closed.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(*idleRedial):
				}
			}
		})
	}
	// Let the connections pile up.
	deadline := time.Now().Add(30 * time.Second)
	for dials.Load() < int64(*idleConns) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	var lat []time.Duration
	for i := range 10 {
		t0 := time.Now()
		conn := r.dial(t, d.listen, fmt.Sprintf("verifier-%d", i), "127.0.0.1")
		qctx, qcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := pb.NewAttestationServiceClient(conn).Quote(qctx, &pb.QuoteRequest{Nonce: nonce()})
		qcancel()
		if err != nil {
			t.Fatalf("quote %d with %d idle connections: %v", i, *idleConns, err)
		}
		lat = append(lat, time.Since(t0))
		conn.Close()
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	inOrder := fmt.Sprint(lat)
	t.Logf("%d idle connections, each opened again %v after the agent closes it (%d dialled, %d closed by the agent): 10 fresh verifiers dial and quote in p50 %v, max %v (in order: %s)",
		*idleConns, *idleRedial, dials.Load(), closed.Load(), pct(lat, 50), pct(lat, 100), inOrder)
	// The latency is a measured figure: the test suite's run, on a machine
	// shared with other tests, reports it; the documented run sets the
	// pass mark with -idle-target.
	if *idleTarget > 0 && pct(lat, 100) >= *idleTarget {
		t.Errorf("a quote took %v from dial to answer with %d idle connections, want under %v", pct(lat, 100), *idleConns, *idleTarget)
	}
}
