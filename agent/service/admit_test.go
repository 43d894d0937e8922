package service

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// streamDeadlines counts the objects the servers' transports allocated
// for the deadlines of streams (context.WithDeadline under gRPC's
// operateHeaders: the context and its timer) that are still reachable
// after a collection. It needs runtime.MemProfileRate 1 from before the
// streams opened, so that every allocation is in the profile.
func streamDeadlines(t *testing.T) (int64, string) {
	t.Helper()
	runtime.GC()
	runtime.GC() // the profile is as of the last completed cycle
	var recs []runtime.MemProfileRecord
	for n := 256; ; n *= 2 {
		recs = make([]runtime.MemProfileRecord, n)
		if m, ok := runtime.MemProfile(recs, true); ok {
			recs = recs[:m]
			break
		}
	}
	var live int64
	var where string
	for _, r := range recs {
		// The runtime's per-P timer heap grows in place when a timer is
		// added; its backing array is attributed to whichever timer grew
		// it and stays: that is no stream's.
		var deadline, transport, timerHeap bool
		var stack strings.Builder
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			deadline = deadline || f.Function == "context.WithDeadlineCause"
			transport = transport || strings.HasSuffix(f.Function, ".(*http2Server).operateHeaders")
			timerHeap = timerHeap || f.Function == "runtime.(*timers).addHeap"
			fmt.Fprintf(&stack, "\n\t%s:%d", f.Function, f.Line)
			if !more {
				break
			}
		}
		if deadline && transport && !timerHeap && r.InUseObjects() > 0 {
			live += r.InUseObjects()
			where = stack.String()
		}
	}
	return live, where
}

// TestRefusedWithDeadlineHoldsNothing: a call turned away by the budgets
// holds nothing once it is answered, even when the client gave it a
// deadline. gRPC makes a stream's context, with a timer for the client's
// deadline, before the tap sees the stream, and does not cancel it when
// the tap refuses the stream: each such refusal kept a context and a
// running timer until the client's deadline (which the client chooses),
// and at that deadline a goroutine. Under a flood of refused calls that
// share one deadline (issue 16's hostile harness) that was 100,000
// goroutines at once and 250 MiB of stacks. Every refusal must be
// answered RESOURCE_EXHAUSTED, as before.
func TestRefusedWithDeadlineHoldsNothing(t *testing.T) {
	testutil.RequireRoot(t)
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	t.Cleanup(func() { runtime.MemProfileRate = rate })
	const refused = 300
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }

	// Remote: Identity past the client's rate, Events past its streams.
	// (The local socket is served by the same Server below.)
	s, addr := remoteWithLimits(t, Options{IdentityRate: 1, IdentityBurst: 1, MaxEventsPerPeer: 1,
		LoadRate: 1, LoadBurst: 1, Now: clock, RefusalDelay: -1}) // the delay has its own test
	rconn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close()
	c := pb.NewAttestationServiceClient(rconn)
	if _, err := c.Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
		t.Fatalf("identity within the burst: %v", err)
	}
	held, cancelHeld := context.WithCancel(t.Context())
	follow, err := c.Events(held, &pb.EventsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follow.Recv(); err != nil { // admitted: it holds the client's one stream
		t.Fatal(err)
	}
	for i := range refused {
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		_, err := c.Identity(ctx, &pb.IdentityRequest{})
		if status.Code(err) != codes.ResourceExhausted {
			cancel()
			t.Fatalf("identity %d past the rate: %v, want ResourceExhausted", i, err)
		}
		ev, err := c.Events(ctx, &pb.EventsRequest{})
		if err == nil {
			_, err = ev.Recv()
		}
		cancel()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("Events stream %d past the client's streams: %v, want ResourceExhausted", i, err)
		}
	}

	// Local: loads past the requester's rate.
	conn := serveLocal(t, s)
	local := pb.NewLocalServiceClient(conn)
	req := &pb.LoadRequest{Artifact: []byte("not an artifact")}
	if _, err := local.Load(t.Context(), req); status.Code(err) == codes.ResourceExhausted {
		t.Fatalf("first load: %v, want it admitted", err)
	}
	for i := range refused {
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		_, err := local.Load(ctx, req)
		cancel()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("load %d past the rate: %v, want ResourceExhausted", i, err)
		}
	}

	// Once the clients have gone, gRPC holds none of their streams: a
	// deadline's context still live is one its refusal left running.
	cancelHeld()
	rconn.Close()
	conn.Close()
	var n int64
	var where string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n, where = streamDeadlines(t); n == 0 {
			return
		}
	}
	t.Errorf("%d objects of stream deadlines live after %d refused calls with a deadline of an hour and their clients gone, want 0; allocated at:%s", n, 3*refused, where)
}

// TestRefusalDelay: a call turned away by a budget is answered after the
// refusal delay, and its connection reads nothing more meanwhile, so a
// client that asks again at once gets at most one refusal per delay; a
// client on another connection is not held up by it (its call is answered
// while the first connection's refusal still waits); a negative delay
// answers at once.
func TestRefusalDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	now := time.Unix(1_700_000_000, 0)
	_, addr := remoteWithLimits(t, Options{IdentityRate: 1e-9, IdentityBurst: 1, RefusalDelay: delay,
		Now: func() time.Time { return now }})
	dial := func() pb.AttestationServiceClient {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewAttestationServiceClient(conn)
	}
	flood := dial()
	if _, err := flood.Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
		t.Fatalf("identity within the burst: %v", err)
	}
	const n = 5
	start := time.Now()
	for i := range n {
		if _, err := flood.Identity(t.Context(), &pb.IdentityRequest{}); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("identity %d past the rate: %v, want ResourceExhausted", i, err)
		}
	}
	if took := time.Since(start); took < n*delay {
		t.Errorf("%d refusals in %v, want none sooner than %v apart", n, took, delay)
	}

	// A refusal waiting on one connection; a quote on another (no quote
	// limit here) is answered before it.
	refused := make(chan time.Time, 1)
	go func() {
		flood.Identity(t.Context(), &pb.IdentityRequest{})
		refused <- time.Now()
	}()
	time.Sleep(delay / 10) // the refusal is waiting (a race here only weakens the check)
	if _, err := dial().Quote(t.Context(), &pb.QuoteRequest{Nonce: make([]byte, 32)}); err != nil {
		t.Fatalf("a quote on another connection: %v", err)
	}
	answered := time.Now()
	if r := <-refused; r.Before(answered) {
		t.Errorf("the other connection's quote was answered after the refusal (%v before it): held up by the delay", answered.Sub(r))
	}
}
