package agent_test

import (
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/measure"
)

// TestLoadsTakeTurns: a group member has eight loads queued (refused
// ones: each is measured and recorded under the pipeline lock, as a flood's
// are) when root asks for a load; root's load is recorded after at most
// one of the member's, not after all eight. Issue 16: a well-behaved
// load must not wait behind a flood from one client.
func TestLoadsTakeTurns(t *testing.T) {
	cfg := config(t)
	cfg.RefusalLogRate, cfg.RefusalLogBurst = 1e-9, 100 // every refusal recorded one by one
	a := newAgent(t, cfg)
	const member = 65534
	unsigned := header(t, "counter", false)
	load := func(uid uint32) *agent.LoadResponse {
		req := agent.LoadRequest{Artifact: unsigned, Requester: measure.Requester{UID: uid, GID: uid, PID: uint32(os.Getpid())}}
		resp, err := a.Load(t.Context(), req)
		if !errors.Is(err, agent.ErrRefused) || resp == nil || resp.MeasurementRecord == 0 {
			t.Errorf("uid %d: %v, response %+v; want a recorded refusal", uid, err, resp)
			return nil
		}
		return resp
	}
	queued := func(n int) {
		t.Helper()
		for a.PipelineWaiting() != n {
			select {
			case <-t.Context().Done():
				t.Fatalf("%d loads waiting, want %d", a.PipelineWaiting(), n)
			case <-time.After(time.Millisecond):
			}
		}
	}

	release := a.HoldPipeline()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		members []uint64
		root    uint64
	)
	for i := range 8 {
		wg.Go(func() {
			if resp := load(member); resp != nil {
				mu.Lock()
				members = append(members, resp.MeasurementRecord)
				mu.Unlock()
			}
		})
		queued(i + 1)
	}
	wg.Go(func() {
		if resp := load(0); resp != nil {
			root = resp.MeasurementRecord
		}
	})
	queued(9)
	release()
	wg.Wait()
	if root == 0 || len(members) != 8 {
		t.Fatalf("root's measurement record %d, %d of the member's; want all nine recorded", root, len(members))
	}
	before := 0
	for _, r := range members {
		if r < root {
			before++
		}
	}
	if before > 1 {
		t.Errorf("root's load was recorded after %d of the member's 8 queued before it, want at most 1 (records: root %d, member %v)", before, root, members)
	}
}
