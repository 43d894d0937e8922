package service

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/measure"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestPool: a pool refuses past its per-peer and total limits, a shrunk
// grant gives back the difference, and a release is idempotent.
func TestPool(t *testing.T) {
	p := newPool("test", "bytes", 10, 6)
	a, err := p.take("a", 6)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.take("a", 1); err == nil {
		t.Fatal("a peer took past its limit")
	}
	b, err := p.take("b", 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.take("c", 1); err == nil {
		t.Fatal("a peer took past the total")
	}
	a.shrink(2)
	if _, err := p.take("c", 4); err != nil {
		t.Fatalf("after a shrank to 2: %v", err)
	}
	a.release()
	a.release()
	b.release()
	if n := p.inUse(); n != 4 {
		t.Fatalf("%d in use, want 4 (c's)", n)
	}
	if n := p.refused.Load(); n != 2 {
		t.Errorf("%d refusals counted, want 2", n)
	}
}

// tapCtx is the context a tap handle gets for a local peer.
func tapCtx(uid, gid uint32) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.UnixAddr{Name: "@test", Net: "unix"},
		AuthInfo: PeerCred{UID: uid, GID: gid, Allowed: true},
	})
}

// TestLocalTapLoads: the local tap admits loads within a requester's
// bytes (two of the largest request) and rate, turns the rest away with
// RESOURCE_EXHAUSTED before anything is read, and counts each of those in
// the agent; what a load held comes back when its stream ends.
func TestLocalTapLoads(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newTestServer(t, Options{MaxArtifactSize: 4096, LoadRate: 1, LoadBurst: 3, Now: func() time.Time { return now }})
	load := &tap.Info{FullMethodName: pb.LocalService_Load_FullMethodName}
	counted := func() uint64 { return s.agent.Metrics().Snapshot().Counted["throttled"] }

	ctx1, err := s.localTap(tapCtx(1000, 1000), load)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.localTap(tapCtx(1000, 1000), load); err != nil {
		t.Fatal(err)
	}
	_, err = s.localTap(tapCtx(1000, 1000), load)
	if status.Code(err) != codes.ResourceExhausted || counted() != 1 {
		t.Fatalf("third load of a requester holding two: %v (counted %d), want ResourceExhausted, counted", err, counted())
	}
	if _, err := s.localTap(tapCtx(1001, 1000), load); err != nil {
		t.Fatalf("another requester: %v", err)
	}
	// The stream of the first load ends: its bytes come back.
	budgetOf(ctx1).cancel(context.Canceled)
	deadline := time.Now().Add(5 * time.Second)
	for s.loadBytes.inUse() > 2*int64(s.maxLoadRequest()) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// The requester's third load is within its bytes now, but past its
	// rate (a burst of 3, no time passing).
	_, err = s.localTap(tapCtx(1000, 1000), load)
	if status.Code(err) != codes.ResourceExhausted || counted() != 2 {
		t.Fatalf("fourth load past the rate: %v (counted %d), want ResourceExhausted, counted", err, counted())
	}
	now = now.Add(time.Second)
	if _, err := s.localTap(tapCtx(1000, 1000), load); err != nil {
		t.Fatalf("a second later: %v", err)
	}
	// Status calls are not loads: nothing is counted for them.
	if _, err := s.localTap(tapCtx(1000, 1000), &tap.Info{FullMethodName: pb.LocalService_Status_FullMethodName}); err != nil || counted() != 2 {
		t.Fatalf("status: %v, counted %d", err, counted())
	}
}

// TestLoadThrottledInLog: over the real socket, a load past the
// requester's rate is RESOURCE_EXHAUSTED, never reaches the agent, and is
// in the log the next quote covers, counted as throttled.
func TestLoadThrottledInLog(t *testing.T) {
	testutil.RequireRoot(t)
	now := time.Unix(1_700_000_000, 0)
	s := newTestServer(t, Options{LoadRate: 1, LoadBurst: 1, Now: func() time.Time { return now }})
	defer s.Shutdown(t.Context())
	conn := serveLocal(t, s)
	local := pb.NewLocalServiceClient(conn)
	req := &pb.LoadRequest{Artifact: []byte("not an artifact")}
	if _, err := local.Load(t.Context(), req); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("first load: %v, want InvalidArgument (admitted, then refused as malformed)", err)
	}
	before := s.agent.Status().Records
	if _, err := local.Load(t.Context(), req); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second load: %v, want ResourceExhausted", err)
	}
	ev, err := s.agent.Quote(t.Context(), make([]byte, 32), before)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cel.Decode(ev.Log)
	if err != nil {
		t.Fatal(err)
	}
	var throttled uint64
	for _, r := range recs {
		if r.Type != cel.BPFRefusals {
			continue
		}
		rf, err := measure.ParseRefusals(r.Content)
		if err != nil {
			t.Fatal(err)
		}
		_, n := rf.Total()
		throttled += n
	}
	if throttled != 1 {
		t.Fatalf("%d throttled loads in the quoted log, want 1", throttled)
	}
}

// TestRemoteBudgets: a client past its Identity rate, its Events streams
// or its quote bytes is turned away before any work; the others are not.
func TestRemoteBudgets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s, addr := remoteWithLimits(t, Options{IdentityRate: 1, IdentityBurst: 2, MaxEventsPerPeer: 1, MaxQuoteBytesPerPeer: 64,
		Now: func() time.Time { return now }})
	c := identityClient(t, addr)
	for i := range 2 {
		if _, err := c.Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
			t.Fatalf("identity %d within the burst: %v", i, err)
		}
	}
	if _, err := c.Identity(t.Context(), &pb.IdentityRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("identity past the burst: %v, want ResourceExhausted", err)
	}
	now = now.Add(time.Second)
	if _, err := c.Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
		t.Fatalf("identity a second later: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	follow, err := c.Events(ctx, &pb.EventsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follow.Recv(); err != nil { // admitted: record 0 comes
		t.Fatal(err)
	}
	second, err := c.Events(t.Context(), &pb.EventsRequest{})
	if err == nil {
		_, err = second.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a second Events stream: %v, want ResourceExhausted", err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for s.eventsStreams.inUse() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	third, err := c.Events(t.Context(), &pb.EventsRequest{})
	if err == nil {
		_, err = third.Recv()
	}
	if err != nil {
		t.Fatalf("Events after the first stream ended: %v", err)
	}

	// The log from record 0 is more than 64 bytes: more than the client
	// may be sent in quotes at once, whatever else is in flight.
	_, err = c.Quote(t.Context(), &pb.QuoteRequest{Nonce: make([]byte, 32)})
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("a quote of more than the client's quote bytes: %v, want OutOfRange", err)
	}
	if _, err := c.Quote(t.Context(), &pb.QuoteRequest{Nonce: make([]byte, 32), FromRecord: s.agent.Status().Records}); err != nil {
		t.Fatalf("a quote of the tail: %v", err)
	}
}

// TestEventsStalled: a client that opens an Events stream over a log
// longer than what gRPC buffers for a stream, and reads nothing, has its
// connection cut after the stall timeout; other clients are served.
func TestEventsStalled(t *testing.T) {
	a := agentWithLongLog(t)
	s := New(a, Options{StallTimeout: time.Second})
	addr := serveRemote(t, s)
	stalled := identityClient(t, addr)
	stream, err := stalled.Events(t.Context(), &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.conns.stalled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a stalled Events stream was not cut in 30 s (stall timeout 1 s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What the client had buffered comes, then the cut.
	var err2 error
	for err2 == nil {
		_, err2 = stream.Recv()
	}
	if status.Code(err2) != codes.Unavailable && status.Code(err2) != codes.Canceled {
		t.Errorf("stalled stream ended with %v, want Unavailable", err2)
	}
	if _, err := identityClient(t, addr).Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
		t.Errorf("another client after the cut: %v", err)
	}
	// The stream's handler returns once its blocked send fails: then the
	// stream's budget comes back.
	for deadline := time.Now().Add(10 * time.Second); s.eventsStreams.inUse() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%d Events streams still held 10 s after the cut", s.eventsStreams.inUse())
			break
		}
	}
}

// agentWithLongLog is an agent on the simulator, closed with the test,
// whose log is longer than four of gRPC's flow-control windows: refused
// loads of an unsigned artifact grow it (two records, about 1 KiB, each).
func agentWithLongLog(t *testing.T) *agent.Agent {
	t.Helper()
	testutil.RequireRoot(t)
	a, err := agent.New(t.Context(), agent.Config{TPM: "sim", StateDir: t.TempDir(), ObserverInterval: -1, RefusalLogRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	src := readFile(t, testutil.LskelFile(t, "headers/counter.lskel.h"))
	for i := 0; a.LogBytesFrom(0) < 4*windowSize; i++ {
		if i == 2000 {
			t.Fatalf("log of %d bytes after %d refused loads, want more than %d", a.LogBytesFrom(0), i, 4*windowSize)
		}
		a.Load(t.Context(), agent.LoadRequest{Artifact: src, Requester: measure.Requester{UID: 1}})
	}
	return a
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLocalTapRootShare: when the group's members together hold all the
// load bytes and the total load rate, root is still admitted within its
// own share, and a member is not.
func TestLocalTapRootShare(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newTestServer(t, Options{MaxArtifactSize: 4096, LoadRateTotal: 1, LoadBurstTotal: 2,
		MaxLoadBytes: 2 * int64(4096+localOverhead), Now: func() time.Time { return now }})
	load := &tap.Info{FullMethodName: pb.LocalService_Load_FullMethodName}
	for _, uid := range []uint32{1000, 1001} {
		if _, err := s.localTap(tapCtx(uid, 1000), load); err != nil {
			t.Fatalf("member %d: %v", uid, err)
		}
	}
	if _, err := s.localTap(tapCtx(1002, 1000), load); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third member past the totals: %v, want ResourceExhausted", err)
	}
	for i := range 2 {
		if _, err := s.localTap(tapCtx(0, 0), load); err != nil {
			t.Fatalf("root's load %d with the members at the totals: %v", i, err)
		}
	}
	// Root's own share still holds: two of the largest request.
	if _, err := s.localTap(tapCtx(0, 0), load); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("root past its own share: %v, want ResourceExhausted", err)
	}
}

// TestEventsPaced: an Events stream past its client's rate, or all
// clients' rate, waits for the tokens instead of being sent at once; with
// the limits off the same log comes at once.
func TestEventsPaced(t *testing.T) {
	frozen := time.Unix(1_700_000_000, 0) // the debt is never paid back
	for _, tc := range []struct {
		name       string
		opts       Options
		wantPaused bool
	}{
		{"per client", Options{EventsRate: 1, EventsBurst: 1, EventsRateTotal: -1}, true},
		{"all clients", Options{EventsRate: -1, EventsRateTotal: 1, EventsBurstTotal: 1}, true},
		{"off", Options{EventsRate: -1, EventsRateTotal: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = func() time.Time { return frozen }
			_, addr := remoteWithLimits(t, tc.opts)
			c := identityClient(t, addr)
			// The connection first, so that the window below is the
			// stream's alone.
			if _, err := c.Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tc.wantPaused {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Second)
				defer cancel()
			}
			stream, err := c.Events(ctx, &pb.EventsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				if _, err = stream.Recv(); err != nil {
					break
				}
				n++
			}
			switch {
			case tc.wantPaused && (n != 0 || status.Code(err) != codes.DeadlineExceeded):
				t.Errorf("%d records, then %v; want none in 1 s (DeadlineExceeded)", n, err)
			case !tc.wantPaused && (n == 0 || err != io.EOF):
				t.Errorf("%d records, then %v; want the log, then EOF", n, err)
			}
		})
	}
}
