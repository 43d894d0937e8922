package attest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// TestVerifyConcurrentSameState: verifications from one State on many
// goroutines at once (a scanner or fleet node on every core, an agent's
// replicas) give the sequential verification's State, and leave the State
// they started from as it was. Run with -race, this is what lets scan and
// the fleet service verify in parallel without a lock.
func TestVerifyConcurrentSameState(t *testing.T) {
	key, akPub, ms := incrementalSeeds(t)
	a := newSoftAgent(t, key, akPub, ms)
	prog := []byte{}
	for i := range 24 {
		prog = append(prog, 0, byte(i), 2, 0, byte(i%3), 4, 0, 1, 6, 8, byte(i), 11, 0)
	}
	marshal := func(s *State) []byte {
		t.Helper()
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var state *State
	rounds := 0
	for len(prog) > 0 {
		if !a.step(t, &prog) {
			continue
		}
		nonce := sha256.Sum256(fmt.Appendf(nil, "concurrent %d", rounds))
		ev := a.quote(t, nonce[:], 0)
		opts := VerifyOptions{Nonce: nonce[:], AKPublic: akPub}
		var before []byte
		if state != nil {
			ev.Log, _ = cel.Encode(a.recs[state.NextRecord():])
			ev.FromRecord, opts.State = state.NextRecord(), state
			before = marshal(state)
		}
		res, err := Verify(ev, opts)
		if err != nil {
			t.Fatalf("round %d: %v", rounds, err)
		}
		want := marshal(res.State())
		const workers, each = 4, 3
		got := make([][]byte, workers*each)
		errs := make([]error, workers*each)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for k := range each {
					r, err := Verify(ev, opts)
					if errs[w*each+k] = err; err == nil {
						got[w*each+k], errs[w*each+k] = r.State().MarshalBinary()
					}
				}
			})
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil {
				t.Fatalf("round %d, concurrent verification %d: %v", rounds, i, errs[i])
			}
			if !bytes.Equal(got[i], want) {
				t.Fatalf("round %d, concurrent verification %d: State differs from the sequential one", rounds, i)
			}
		}
		if state != nil && !bytes.Equal(marshal(state), before) {
			t.Fatalf("round %d: verifying from the State changed it", rounds)
		}
		state = res.State()
		rounds++
	}
	if rounds < 10 {
		t.Fatalf("%d rounds", rounds)
	}
}
