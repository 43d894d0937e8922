package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/measure"
)

// TestIncrementalEqualsFull proves the resume contract: verifying a quote
// with the log from a State's NextRecord gives the same Result and a
// byte-identical new State as verifying the same quote with the whole log,
// across several rounds of loads, unloads, unmeasured programs and a
// journal reopen (agent restart) — and the State survives its binary and
// JSON encodings on the way, as it would between verifier replicas.
func TestIncrementalEqualsFull(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	var state *State
	var s *scenario
	for round := range 4 {
		switch round {
		case 0:
			s = runScenario(a)
		case 1:
			// The pending load gets its answer; counter's program leaves.
			a.answer(s.pendingRec, s.pending)
			a.unload(s.counter.result.RecNum, s.counter.res.Programs[0])
			a.load(fixtureMeasurement(t, "pair.lskel.h", measure.KernelCheckNotSubmitted), measure.OutcomeKernelError)
		case 2:
			a.close()
			a.open() // an agent restart within the boot
			a.unmeasured("late", 5)
		case 3:
			// Nothing new: a quote over an unchanged log.
		}
		nonce := freshNonce(t, round)
		full := a.quote(nonce, 0)
		want, err := Verify(full, a.opts(nonce))
		if err != nil {
			t.Fatalf("round %d full: %v", round, err)
		}
		if state == nil {
			state = want.State()
			continue
		}
		// Hand the State to "another replica" through an encoding.
		state = roundTripState(t, state, round%2 == 0)
		inc := a.quote(nonce, state.NextRecord())
		// Same quote as full: copy its signed parts so only the log differs.
		inc.Attest, inc.Signature, inc.PCRs = full.Attest, full.Signature, full.PCRs
		opts := a.opts(nonce)
		opts.State = state
		got, err := Verify(inc, opts)
		if err != nil {
			t.Fatalf("round %d incremental from %d: %v", round, state.NextRecord(), err)
		}
		compareResults(t, want, got)
		state = got.State()
	}
}

func compareResults(t *testing.T, want, got *Result) {
	t.Helper()
	opt := cmp.Options{cmpopts.EquateEmpty()}
	for name, pair := range map[string][2]any{
		"programs":   {want.Programs(), got.Programs()},
		"pending":    {want.Pending(), got.Pending()},
		"failed":     {want.Failed(), got.Failed()},
		"unmeasured": {want.Unmeasured(), got.Unmeasured()},
		"recoveries": {want.Recoveries(), got.Recoveries()},
		"pcr values": {want.PCRValues(), got.PCRValues()},
		"boot":       {[]any{want.BootID(), want.Clock(), want.NextRecord()}, []any{got.BootID(), got.Clock(), got.NextRecord()}},
	} {
		if diff := cmp.Diff(pair[0], pair[1], opt); diff != "" {
			t.Errorf("%s differ (-full +incremental):\n%s", name, diff)
		}
	}
	wb, err := want.State().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	gb, err := got.State().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wb, gb) {
		t.Errorf("states differ: full %d bytes, incremental %d bytes", len(wb), len(gb))
	}
}

func roundTripState(t *testing.T, s *State, useJSON bool) *State {
	t.Helper()
	var out State
	if useJSON {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
	} else {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := out.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := s.MarshalBinary()
	b, _ := out.MarshalBinary()
	if !bytes.Equal(a, b) {
		t.Fatalf("state changed in its encoding (json %v)", useJSON)
	}
	return &out
}

// TestStateDecodeRefuses proves decoding rejects States that Verify could
// not have made: a truncated encoding, a wrong magic, trailing bytes, and
// a record the inventory would not keep.
func TestStateDecodeRefuses(t *testing.T) {
	a := newTestAgent(t, "sim", tpm.AKECCP256)
	runScenario(a)
	nonce := freshNonce(t, 0)
	res, err := Verify(a.quote(nonce, 0), a.opts(nonce))
	if err != nil {
		t.Fatal(err)
	}
	good, err := res.State().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated": good[:len(good)-1],
		"magic":     append([]byte("XPFV"), good[4:]...),
		"trailing":  append(bytes.Clone(good), 0),
		"empty":     nil,
	}
	for name, b := range cases {
		var s State
		if err := s.UnmarshalBinary(b); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
	var s State
	if err := json.Unmarshal([]byte(`{"version":1,"pcr":14,"boot_id":"x","next_record":5,"running":{"sha256":"00"},"records":[]}`), &s); !errors.Is(err, ErrState) {
		t.Errorf("short running value: %v, want ErrState", err)
	}
	if _, err := (&State{}).MarshalBinary(); !errors.Is(err, ErrState) {
		t.Errorf("zero state marshalled: %v", err)
	}
}
