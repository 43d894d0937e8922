package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/service"
	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/api"
	"github.com/bpfattest/bpfattest/fleet/pushclient"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// startAgent runs a real agent on the simulator, serving its remote API
// without TLS on a loopback port, and returns a client of it.
func startAgent(t *testing.T) pb.AttestationServiceClient {
	t.Helper()
	c, _ := startAgentAt(t)
	return c
}

// startAgentAt is startAgent that also returns the agent's address.
func startAgentAt(t *testing.T) (pb.AttestationServiceClient, string) {
	t.Helper()
	testutil.RequireRoot(t)
	a, err := agent.New(t.Context(), agent.Config{TPM: "sim", StateDir: t.TempDir(), ObserverInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := service.New(a, service.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeRemote(ln)
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		a.Close()
	})
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewAttestationServiceClient(conn), ln.Addr().String()
}

func newService(t *testing.T, cfg fleet.Config) *fleet.Service {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	svc, err := fleet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PutPolicy(t.Context(), fleet.DefaultPolicyName, []byte("version: 1\nallow_simulator: true\nrequire_signed: true\n")); err != nil {
		t.Fatal(err)
	}
	return svc
}

// pushEndpoint serves PushService with mutual TLS and returns a client
// presenting cert.
func pushEndpoint(t *testing.T, svc *fleet.Service, ca, server *testutil.Cert) func(cert *testutil.Cert) pb.PushServiceClient {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{server.TLS()}, ClientAuth: tls.RequireAnyClientCert}
	s := api.NewPushServer(svc, credentials.NewTLS(cfg))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go api.ServePush(s, ln)
	t.Cleanup(s.Stop)
	return func(cert *testutil.Cert) pb.PushServiceClient {
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		ccfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: []tls.Certificate{cert.TLS()}}
		conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(ccfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewPushServiceClient(conn)
	}
}

// TestPush: an agent without an inbound port pushes through the push
// client: verified the same way (compliant, AK pinned on first use, the
// state advanced); too early is refused with a delay; an unknown
// certificate and a wrong session are refused; an agent that stops
// pushing is judged unreachable after its grace, and recovers when it
// pushes again.
func TestPush(t *testing.T) {
	ag := startAgent(t)
	const interval = 2 * time.Second
	svc := newService(t, fleet.Config{Interval: interval, PushGrace: time.Second, Poll: 50 * time.Millisecond, TOFU: true})
	ca := testutil.NewCert(t, "ca", nil, false)
	client := pushEndpoint(t, svc, ca, testutil.NewCert(t, "fleet", ca, true))
	node, stranger := testutil.NewCert(t, "node", ca, false), testutil.NewCert(t, "stranger", ca, false)
	ctx := t.Context()
	if err := svc.Register(ctx, []fleet.AgentSpec{{Name: "edge1", Mode: store.ModePush, CertSHA256: api.Fingerprint(node.Cert.Raw)}}); err != nil {
		t.Fatal(err)
	}
	pc := &pushclient.Client{Agent: ag, Verifier: client(node), Timeout: 30 * time.Second}
	pushed := time.Now()
	r, err := pc.Once(ctx)
	if err != nil || r.Status != verifier.StatusCompliant || r.Next != interval {
		t.Fatalf("first push: %+v, %v", r, err)
	}
	a, _ := svc.Store().Agent(ctx, "edge1")
	if a.StateVersion != 1 || a.Pinned != verifier.PinTOFU || len(a.AKPublic) == 0 || a.Status != verifier.StatusCompliant {
		t.Errorf("after the first push: version %d pinned %q status %s", a.StateVersion, a.Pinned, a.Status)
	}
	if r, err := pc.Once(ctx); err != nil || r.Status != "not-due" || r.Next <= 0 || r.Next > interval {
		t.Errorf("second push at once: %+v, %v; want not-due", r, err)
	}
	if _, err := client(stranger).Challenge(ctx, &pb.ChallengeRequest{}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown certificate: %v, want NotFound", err)
	}
	if _, err := client(node).Submit(ctx, &pb.SubmitRequest{Session: "00", Evidence: &pb.Evidence{}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("wrong session: %v, want FailedPrecondition", err)
	}

	// Silence: the scheduler judges the agent unreachable after its grace.
	runCtx, stop := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	// Due one interval (plus jitter) after the push, unreachable a grace
	// later; the bound is generous because a loaded machine delays the
	// scheduler, and the status must come from the scheduler, not time.
	silent := time.Now()
	deadline := silent.Add(30 * time.Second)
	for {
		a, _ = svc.Store().Agent(ctx, "edge1")
		if a.Status == verifier.StatusUnreachable {
			// Not before it was due (the interval less its 10 % jitter)
			// and its grace had passed.
			if early := time.Duration(0.9*float64(interval)) + time.Second; time.Since(pushed) < early {
				t.Errorf("judged unreachable %v after its push, before due + grace (%v)", time.Since(pushed), early)
			}
			t.Logf("silent push agent unreachable %v after its last push", time.Since(pushed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("silent push agent: status %s %v after it fell silent, want unreachable", a.Status, time.Since(silent))
		}
		time.Sleep(50 * time.Millisecond)
	}
	r, err = pc.Once(ctx)
	if err != nil || r.Status != verifier.StatusCompliant {
		t.Errorf("push after being unreachable: %+v, %v", r, err)
	}
	a, _ = svc.Store().Agent(ctx, "edge1")
	if a.StateVersion != 2 {
		t.Errorf("state version %d, want 2 (the unreachable verdict does not advance it)", a.StateVersion)
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, errStopped) {
		t.Errorf("run: %v", err)
	}
}
