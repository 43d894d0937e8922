package agent_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
)

// TestQuoteResumeWhileAppending: a verifier that asks each quote from the
// record after the last one it was given is never told its record is past
// the end, while others append. The check used to read a counter updated
// after the append returned, so a quote could carry records the next
// quote's check did not know of yet (found by bench/reliability
// TestHostile: "from record 5162 past the end (5160 records)").
func TestQuoteResumeWhileAppending(t *testing.T) {
	cfg := config(t)
	cfg.RefusalLogRate = -1 // every refusal two records
	a := newAgent(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the Wait
	req := agent.LoadRequest{Artifact: header(t, "counter", false), Requester: measure.Requester{UID: 65534, GID: 100}}
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				a.Load(ctx, req)
			}
		})
	}
	next := a.Status().Records
	for i := range 150 {
		nonce := make([]byte, 32)
		rand.Read(nonce)
		ev, err := a.Quote(t.Context(), nonce, next)
		if err != nil {
			t.Fatalf("quote %d from record %d: %v", i, next, err)
		}
		recs, err := cel.Decode(ev.Log)
		if err != nil {
			t.Fatal(err)
		}
		next = nextAfter(t, recs, next) // loads share commits: batch records
	}
}
