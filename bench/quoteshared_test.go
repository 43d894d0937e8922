package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/service"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

var (
	sharedRounds   = flag.Int("shared-rounds", 5, "BenchmarkQuoteSharedAddress: timed rounds per configuration")
	sharedRoundLen = flag.Duration("shared-round", 10*time.Second, "BenchmarkQuoteSharedAddress: length of one round, after a second of warm-up")
	sharedConns    = flag.Int("shared-conns", 16, "BenchmarkQuoteSharedAddress: connections the verifier host keeps to the agent (the agent allows 16 from one address)")
)

// sharedQuoteDelay is how long the slow proxy holds each TPM2_Quote
// response in BenchmarkQuoteSharedAddress: a discrete TPM's signing time.
const sharedQuoteDelay = 200 * time.Millisecond

// BenchmarkQuoteSharedAddress serves quotes over the real remote API
// (gRPC, mutual TLS 1.3, the daemon's defaults) to a verifier host: 64
// verifiers sharing one client certificate and one IP address, over
// -shared-conns connections (a host's verifiers share a pool of
// connections: the agent keeps 16 from one address). Each verifier keeps
// a number of requests in flight and asks again as soon as one is
// answered, each resuming from the end of the log it has seen; the
// agent's TPM is swtpm behind a proxy that holds every TPM2_Quote for
// 200 ms. A request's answer waits for the next quote the agent's TPM
// share allows (by default a 200 ms quote every 400 ms), so the requests
// served per second are about the requests in flight divided by that
// period: the in-flight count, not the number of verifiers, decides the
// rate. Sub-benchmarks: in flight per verifier (1, 8, 16: 1,024 requests,
// the default quote calls per peer) and the TPM share (default 0.5; 1:
// quotes back to back).
//
// Run it once with -benchtime 1x: it runs -shared-rounds rounds of
// -shared-round each (after a second of warm-up) per configuration and
// logs, besides the requests turned away (a verifier asks again 50 ms
// later: when the log grows, every request in flight carries the new
// records, and a host's quote log bytes are bounded), min/median/max of
// requests/s, TPM quotes/s, requests per quote and the latency of a
// request (median and 99th percentile), with the load average before and
// after. Every eighth verifier's first answer of a round is verified from
// record 0 (signature, its own nonce through the batch proof, the log's
// replay); verifying every answer would take the CPU the agent serves
// with, and 64 new verifiers at once of a log grown by the programs other
// processes load on this shared kernel would hold more than the peer's
// quote log bytes (16 MiB).
func BenchmarkQuoteSharedAddress(b *testing.B) {
	for _, c := range []struct {
		inflight int
		share    float64
	}{{1, 0}, {8, 0}, {16, 0}, {16, 1}} {
		name := fmt.Sprintf("inflight-%d", c.inflight)
		if c.share != 0 {
			name += fmt.Sprintf("-share-%g", c.share)
		}
		b.Run(name, func(b *testing.B) {
			remote, a, proxy := sharedAgent(b, c.share)
			var rounds []sharedRound
			loadStart := loadAverage()
			for b.Loop() {
				for range max(1, *sharedRounds) {
					r0 := a.Status().Records
					// Verifiers that resume from the end of the log.
					rounds = append(rounds, runSharedRound(b, remote, proxy, c.inflight, a.Status().Records))
					rounds[len(rounds)-1].records = a.Status().Records - r0
					rounds[len(rounds)-1].logBytes = a.LogBytesFrom(0)
				}
			}
			loadEnd := loadAverage()
			b.StopTimer()
			var reqs, qps, per, p50, p99 []float64
			var w strings.Builder
			fmt.Fprintf(&w, "\n64 verifiers × %d in flight over %d connections, one client certificate; TPM share %v; load average before: %s, after: %s\n",
				c.inflight, *sharedConns, a.QuoteTPMShare(), loadStart, loadEnd)
			for i, r := range rounds {
				reqs, qps, per = append(reqs, r.requests), append(qps, r.quotes), append(per, r.requests/r.quotes)
				p50, p99 = append(p50, r.p50.Seconds()*1e3), append(p99, r.p99.Seconds()*1e3)
				fmt.Fprintf(&w, "round %d: %.1f requests/s, %.2f TPM quotes/s, %.0f requests/quote, latency p50 %v p99 %v, %d refused, load average %s; %d records appended (the log: %d bytes)\n",
					i+1, r.requests, r.quotes, r.requests/r.quotes, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.refused, r.load, r.records, r.logBytes)
			}
			for _, m := range []struct {
				name string
				xs   []float64
			}{{"requests/s", reqs}, {"TPM quotes/s", qps}, {"requests/quote", per}, {"p50 ms", p50}, {"p99 ms", p99}} {
				lo, med, hi := stats(m.xs)
				fmt.Fprintf(&w, "%s: min %.1f median %.1f max %.1f\n", m.name, lo, med, hi)
			}
			b.Log(strings.TrimSuffix(w.String(), "\n"))
			_, med, _ := stats(reqs)
			b.ReportMetric(med, "requests/s")
			_, med, _ = stats(qps)
			b.ReportMetric(med, "quotes/s")
			_, med, _ = stats(p99)
			b.ReportMetric(med, "p99-ms")
		})
	}
}

// sharedRound is one round's figures.
type sharedRound struct {
	requests, quotes float64 // per second
	p50, p99         time.Duration
	load             string
	refused          int64  // requests turned away (asked again 50 ms later)
	records          uint64 // appended to the log during the round
	logBytes         int64  // the log's size after it
}

// runSharedRound runs 64 verifiers with inflight requests each for one
// round over the connections in remote (verifier v uses remote[v %
// len(remote)]).
func runSharedRound(b *testing.B, remote []pb.AttestationServiceClient, proxy *tpmtest.SlowProxy, inflight int, from uint64) sharedRound {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var stop atomic.Bool
	// Each slot's answers: when each came, and how long it took.
	type answer struct {
		at  time.Time
		lat time.Duration
	}
	answers := make([][]answer, verifiers*inflight)
	var refused atomic.Int64
	var wg sync.WaitGroup
	for v := range verifiers {
		c := remote[v%len(remote)]
		var verified atomic.Bool
		for k := range inflight {
			wg.Go(func() {
				slot := v*inflight + k
				from := from // the end of the log this request slot has seen
				for i := 0; !stop.Load(); i++ {
					nonce := nonceFor(slot, i)
					req := &pb.QuoteRequest{Nonce: nonce, FromRecord: from}
					check := v%8 == 0 && k == 0 && !verified.Load()
					if check {
						req.FromRecord = 0
					}
					t0 := time.Now()
					resp, err := c.Quote(ctx, req)
					if status.Code(err) == codes.ResourceExhausted && !check {
						// Over the host's quote log bytes (new records
						// times the requests in flight): as a verifier
						// does, ask again a little later.
						refused.Add(1)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if err != nil {
						if !stop.Load() {
							b.Errorf("verifier %d: %v", v, err)
							cancel()
						}
						return
					}
					now := time.Now()
					answers[slot] = append(answers[slot], answer{now, now.Sub(t0)})
					recs, err := cel.Decode(resp.GetLog())
					if err != nil {
						b.Errorf("verifier %d: %v", v, err)
						cancel()
						return
					}
					from = resp.GetFromRecord() + uint64(len(recs))
					if check {
						if err := verifyProto(resp, nonce); err != nil {
							b.Errorf("verifier %d: %v", v, err)
							cancel()
							return
						}
						verified.Store(true)
					}
				}
			})
		}
	}
	// A second of warm-up (the first batch, the verifications), then
	// the round: the answers that came within it, and the TPM quotes.
	// Answers come in batches, so a round's count is within one batch
	// (up to all the requests in flight) of its rate × its length.
	wait := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	wait(time.Second)
	start, held, refused0 := time.Now(), proxy.Delayed(), refused.Load()
	wait(*sharedRoundLen)
	end, quotes, refusals := time.Now(), proxy.Delayed()-held, refused.Load()-refused0
	stop.Store(true)
	wg.Wait()
	var lat []time.Duration
	for _, as := range answers {
		for _, x := range as {
			if !x.at.Before(start) && x.at.Before(end) {
				lat = append(lat, x.lat)
			}
		}
	}
	slices.Sort(lat)
	elapsed := end.Sub(start).Seconds()
	r := sharedRound{requests: float64(len(lat)) / elapsed, quotes: float64(quotes) / elapsed, load: loadAverage(), refused: refusals}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

// verifyProto verifies an answer of the log from record 0 as a new
// verifier does (verify, for any goroutine).
func verifyProto(resp *pb.Evidence, nonce []byte) error {
	ev, err := evidence.FromProto(resp)
	if err != nil {
		return err
	}
	_, err = attest.Verify(ev, attest.VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic, BootPCRs: attest.DefaultBootPCRs()})
	return err
}

// sharedAgent serves an agent on swtpm behind the slow proxy on the remote
// API with mutual TLS and the daemon's default budgets, and returns
// -shared-conns clients that present one certificate from 127.0.0.1.
func sharedAgent(b *testing.B, share float64) ([]pb.AttestationServiceClient, *agent.Agent, *tpmtest.SlowProxy) {
	testutil.RequireRoot(b)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testutil.SkipEnv(b, "kernel without BTF: %v", err)
	}
	sw := tpmtest.StartSwtpm(b, tpmtest.SwtpmOptions{})
	proxy := tpmtest.StartSlowProxy(b, sw.SocketPath(), sharedQuoteDelay, tpmtest.CCQuote)
	a, err := agent.New(b.Context(), agent.Config{TPM: proxy.Spec(), StateDir: b.TempDir(), ObserverInterval: -1, QuoteTPMShare: share})
	if err != nil {
		b.Fatalf("agent.New: %v", err)
	}
	b.Cleanup(func() {
		if err := a.Close(); err != nil && !errors.Is(err, agent.ErrClosed) {
			b.Errorf("close agent: %v", err)
		}
	})
	ca := testutil.NewCert(b, "ca", nil, false)
	server := testutil.NewCert(b, "agent", ca, true)
	tlsCfg, err := service.ServerTLS(service.TLSOptions{CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: ca.CertFile})
	if err != nil {
		b.Fatal(err)
	}
	s := service.New(a, service.Options{TLS: tlsCfg})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.ServeRemote(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	host := testutil.NewCert(b, "verifier host", ca, false)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{host.TLS()}, MinVersion: tls.VersionTLS13}
	var out []pb.AttestationServiceClient
	for range max(1, *sharedConns) {
		c, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if _, err := pb.NewAttestationServiceClient(c).Identity(b.Context(), &pb.IdentityRequest{}); err != nil {
			b.Fatalf("connect: %v", err)
		}
		out = append(out, pb.NewAttestationServiceClient(c))
	}
	return out, a, proxy
}
