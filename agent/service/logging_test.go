package service

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestClientCancelNotAnError: Events streams a client cancels, one idle
// and following, one in the middle of a log longer than gRPC buffers for
// a stream (so the server is blocked sending when the call ends), are
// the client's doing: logged below warning, never as the agent's error.
func TestClientCancelNotAnError(t *testing.T) {
	a := agentWithLongLog(t)
	logs := &recordedLogs{}
	s := New(a, Options{Logger: slog.New(logs), EventsRate: -1, EventsRateTotal: -1})
	c := identityClient(t, serveRemote(t, s))

	for _, follow := range []bool{false, true} {
		ctx, cancel := context.WithCancel(t.Context())
		from := uint64(0)
		if follow {
			from = a.Status().Records // nothing to send: the stream idles
		}
		stream, err := c.Events(ctx, &pb.EventsRequest{FromRecord: from, Follow: follow})
		if err != nil {
			t.Fatal(err)
		}
		if !follow {
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
		} else {
			time.Sleep(100 * time.Millisecond) // the handler is waiting for records
		}
		cancel()
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.eventsStreams.inUse() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.eventsStreams.inUse(); n != 0 {
		t.Fatalf("%d Events streams still held 10 s after their clients cancelled", n)
	}
	var ended int
	for _, l := range logs.lines(slog.LevelDebug) {
		if strings.Contains(l, "Events") {
			ended++
		}
	}
	if ended != 2 {
		t.Errorf("%d log lines about the two cancelled Events calls, want 2: %q", ended, logs.lines(slog.LevelDebug))
	}
	if bad := logs.lines(slog.LevelWarn); len(bad) > 0 {
		t.Errorf("client cancellations logged at warning or above: %q", bad)
	}
}
