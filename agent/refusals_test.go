package agent_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// TestRefusalsCounted: a requester sends 12 artifacts the policy refuses
// (unsigned, not allowed) and has 3 refusal records to spend. The first
// 3 are recorded one by one (a measurement and a refusal each); the other
// 9 are refused the same way and counted, with 2 requests the API turned
// away before measuring, in one "refusals counted" record written before
// the next quote. The verified history counts all 14, the policy's
// refusal bound counts the 12 refusals, and nothing else grew the log.
func TestRefusalsCounted(t *testing.T) {
	cfg := config(t)
	cfg.RefusalLogRate, cfg.RefusalLogBurst = 1e-9, 3 // no refill within the test
	a := newAgent(t, cfg)
	const uid, gid = 65534, 100
	req := agent.LoadRequest{Artifact: header(t, "counter", false), Requester: measure.Requester{UID: uid, GID: gid, PID: uint32(os.Getpid())}}
	before := a.Status().Records
	for i := range 12 {
		resp, err := a.Load(t.Context(), req)
		if !errors.Is(err, agent.ErrRefused) {
			t.Fatalf("load %d: %v, want ErrRefused", i, err)
		}
		counted := strings.Contains(err.Error(), "counted, not recorded one by one")
		switch {
		case i < 3 && (counted || resp.ResultRecord == 0):
			t.Errorf("load %d: %v, response %+v: want it recorded", i, err, resp)
		case i >= 3 && (!counted || resp.MeasurementRecord != 0 || resp.Result.Outcome != measure.OutcomeRefused):
			t.Errorf("load %d: %v, response %+v: want it counted", i, err, resp)
		}
	}
	a.CountThrottled(uid, gid)
	a.CountThrottled(uid, gid)
	if grew := a.Status().Records - before; grew != 6 {
		t.Errorf("the log grew by %d records before the quote, want 6 (3 refusals)", grew)
	}

	res := verify(t, a, nonce(1), nil)
	h := res.History()
	if len(h.Refused) != 3 || h.CountedRefused() != 9 || h.CountedThrottled() != 2 || len(h.Counted) != 1 {
		t.Fatalf("history: %d refused one by one, %d + %d counted in %d records; want 3, 9 + 2 in 1",
			len(h.Refused), h.CountedRefused(), h.CountedThrottled(), len(h.Counted))
	}
	c := h.Counted[0].Requests.Requesters
	if len(c) != 1 || c[0].UID != uid || c[0].GID != gid || len(c[0].Verdicts) != 1 ||
		c[0].Verdicts[0] != (measure.VerdictCount{Verdict: cms.VerdictUnsigned, Count: 9}) || c[0].FirstNS == 0 || c[0].LastNS < c[0].FirstNS {
		t.Errorf("counted: %+v", c)
	}
	twelve, eleven := 12, 11
	if v := attest.Evaluate(res, &attest.Policy{MaxRefusedLoads: &twelve, AllowSimulator: true}); len(v) != 0 {
		t.Errorf("12 refusals against a bound of 12: %v", v)
	}
	v := attest.Evaluate(res, &attest.Policy{MaxRefusedLoads: &eleven, AllowSimulator: true})
	if len(v) != 1 || v[0].Rule != attest.RuleMaxRefused || !strings.Contains(v[0].Reason, "12 loads refused") {
		t.Errorf("12 refusals against a bound of 11: %v", v)
	}

	// Nothing pending: the next quote adds no record.
	recs := a.Status().Records
	verify(t, a, nonce(2), res.State())
	if got, err := a.Records(recs); err != nil || len(ofType(got, cel.BPFRefusals)) != 0 {
		t.Errorf("a second counted record without new requests: %v", err)
	}
}

// TestRefusalsCountedAtClose: counts still pending when the agent closes
// are written before the log closes.
func TestRefusalsCountedAtClose(t *testing.T) {
	cfg := config(t)
	requireKernel(t)
	a, err := agent.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := a.Status().LogPath
	a.CountThrottled(1000, 1000)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	log, err := readLog(path)
	if err != nil {
		t.Fatal(err)
	}
	var throttled uint64
	for _, r := range ofType(log.Records, cel.BPFRefusals) {
		rf, err := measure.ParseRefusals(r.Content)
		if err != nil {
			t.Fatal(err)
		}
		_, n := rf.Total()
		throttled += n
	}
	if throttled != 1 {
		t.Errorf("%d throttled requests in the closed log, want 1", throttled)
	}
}

// clockReads is how many TPM clock reads the agent has made.
func clockReads(a *agent.Agent) uint64 {
	for _, c := range a.Metrics().Snapshot().TPM {
		if c.Class == "clock" {
			return c.Commands
		}
	}
	return 0
}

// TestIdentityCached: a flood of Identity calls, and of readiness probes,
// costs the TPM at most one clock read a second each, and every answer is
// the same identity.
func TestIdentityCached(t *testing.T) {
	a := newAgent(t, config(t))
	first, err := a.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before, start := clockReads(a), time.Now()
	for range 2000 {
		id, err := a.Identity(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(id.AKPublic, first.AKPublic) || id.BootID != first.BootID || id.Clock.ResetCount != first.Clock.ResetCount {
			t.Fatalf("identity changed: %+v, first %+v", id, first)
		}
		if err := a.Ready(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	seconds := uint64(time.Since(start)/time.Second) + 1
	if reads := clockReads(a) - before; reads > 2*seconds {
		t.Errorf("2000 identities and probes in %v made %d clock reads, want at most %d (one a second each)", time.Since(start), reads, 2*seconds)
	}
}
