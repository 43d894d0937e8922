// Package storetest is the one test suite every fleet store engine
// passes: engines call Run from their tests with a function that makes a
// fresh, empty database and returns its opener.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/fleet/store"
)

// Opener opens the database NewDB made; it may be called more than once
// (each call opens it again, running the migrations).
type Opener func(ctx context.Context) (store.Store, error)

// Run runs the suite. newDB makes a fresh empty database for one test.
func Run(t *testing.T, newDB func(t *testing.T) Opener) {
	open := func(t *testing.T) (store.Store, Opener) {
		t.Helper()
		o := newDB(t)
		s, err := o(t.Context())
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return s, o
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, o Opener)
	}{
		{"Reopen", testReopen},
		{"Register", testRegister},
		{"Policies", testPolicies},
		{"Claim", testClaim},
		{"ClaimConcurrent", testClaimConcurrent},
		{"Complete", testComplete},
		{"CompleteCAS", testCompleteCAS},
		{"PushChallenge", testPushChallenge},
		{"Deliveries", testDeliveries},
		{"Listing", testListing},
		{"PruneAndDelete", testPruneAndDelete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, o := open(t)
			tc.fn(t, s, o)
		})
	}
}

// t0 is the suite's clock: a fixed time, with millisecond precision as
// stored.
var t0 = time.UnixMilli(1_800_000_000_000)

func reg(name, addr string) store.Registration {
	return store.Registration{Name: name, Mode: store.ModePull, Address: addr, Policy: "default", NextDue: t0, Now: t0}
}

func mustRegister(t *testing.T, s store.Store, r store.Registration) {
	t.Helper()
	if err := s.Register(t.Context(), r); err != nil {
		t.Fatalf("register %s: %v", r.Name, err)
	}
}

func testReopen(t *testing.T, s store.Store, o Opener) {
	mustRegister(t, s, reg("a", "127.0.0.1:1"))
	s2, err := o(t.Context())
	if err != nil {
		t.Fatalf("second open (migrations again): %v", err)
	}
	defer s2.Close()
	if a, err := s2.Agent(t.Context(), "a"); err != nil || a.Address != "127.0.0.1:1" {
		t.Fatalf("agent after reopen: %+v, %v", a, err)
	}
}

func testRegister(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	r := reg("web1", "127.0.0.1:7000")
	r.AKPublic, r.Pinned = []byte{1, 2, 3}, "ak-file"
	mustRegister(t, s, r)
	a, err := s.Agent(ctx, "web1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode != store.ModePull || a.Address != "127.0.0.1:7000" || !bytes.Equal(a.AKPublic, []byte{1, 2, 3}) ||
		a.Pinned != "ak-file" || a.StateVersion != 0 || a.State != nil || !a.NextDue.Equal(t0) || a.Status != "" {
		t.Errorf("registered agent: %+v", a)
	}
	if _, err := s.Agent(ctx, "nosuch"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown agent: %v, want ErrNotFound", err)
	}
	// A new address and policy: updated; the pin stays.
	r2 := reg("web1", "127.0.0.1:7001")
	r2.Policy = "strict"
	mustRegister(t, s, r2)
	if a, _ := s.Agent(ctx, "web1"); a.Address != "127.0.0.1:7001" || a.Policy != "strict" || !bytes.Equal(a.AKPublic, []byte{1, 2, 3}) {
		t.Errorf("re-registered agent: %+v", a)
	}
	// Another AK: refused.
	r2.AKPublic = []byte{9}
	if err := s.Register(ctx, r2); !errors.Is(err, store.ErrConflict) {
		t.Errorf("another AK: %v, want ErrConflict", err)
	}
	// Importing a state gives version 1.
	r3 := reg("db1", "127.0.0.1:7002")
	r3.State = []byte("state")
	mustRegister(t, s, r3)
	if a, _ := s.Agent(ctx, "db1"); a.StateVersion != 1 || string(a.State) != "state" {
		t.Errorf("imported state: version %d state %q", a.StateVersion, a.State)
	}
	// Push agents are found by their client certificate, which is theirs
	// alone.
	p := store.Registration{Name: "edge1", Mode: store.ModePush, CertSHA256: "aa", Policy: "default", NextDue: t0, Now: t0}
	mustRegister(t, s, p)
	if a, err := s.AgentByIdentity(ctx, "aa"); err != nil || a.Name != "edge1" {
		t.Errorf("by identity: %+v, %v", a, err)
	}
	if _, err := s.AgentByIdentity(ctx, "bb"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown identity: %v", err)
	}
	p.Name = "edge2"
	if err := s.Register(ctx, p); !errors.Is(err, store.ErrConflict) {
		t.Errorf("same client certificate twice: %v, want ErrConflict", err)
	}
	// A batch is all or none.
	ok1, ok2 := reg("new1", "127.0.0.1:1"), reg("new2", "127.0.0.1:2")
	if err := s.Register(ctx, ok1, p, ok2); !errors.Is(err, store.ErrConflict) {
		t.Errorf("batch with a conflict: %v, want ErrConflict", err)
	}
	if _, err := s.Agent(ctx, "new1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused batch registered new1: %v", err)
	}
	if err := s.Register(ctx, ok1, ok2); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Agents(ctx, store.AgentFilter{}); len(all) != 5 {
		t.Errorf("%d agents after the batch, want 5", len(all))
	}
}

func testPolicies(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	v, err := s.PutPolicy(ctx, "default", []byte("version: 1\n"), t0)
	if err != nil || v != 1 {
		t.Fatalf("first put: %d, %v", v, err)
	}
	if v, err := s.PutPolicy(ctx, "default", []byte("version: 1\n"), t0); err != nil || v != 1 {
		t.Errorf("same body: version %d, %v; want 1", v, err)
	}
	if v, err := s.PutPolicy(ctx, "default", []byte("version: 1\nrequire_signed: true\n"), t0); err != nil || v != 2 {
		t.Errorf("new body: version %d, %v; want 2", v, err)
	}
	if _, err := s.PutPolicy(ctx, "strict", []byte("version: 1\nforbid_unmeasured: true\n"), t0); err != nil {
		t.Fatal(err)
	}
	p, err := s.Policy(ctx, "default", 0)
	if err != nil || p.Version != 2 || string(p.Body) != "version: 1\nrequire_signed: true\n" || len(p.SHA256) != 64 {
		t.Errorf("latest: %+v, %v", p, err)
	}
	if p, err := s.Policy(ctx, "default", 1); err != nil || string(p.Body) != "version: 1\n" {
		t.Errorf("version 1: %+v, %v", p, err)
	}
	if _, err := s.Policy(ctx, "default", 3); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("version 3: %v", err)
	}
	if _, err := s.Policy(ctx, "nosuch", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown policy: %v", err)
	}
	all, err := s.Policies(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "default" || all[0].Version != 2 || all[1].Name != "strict" {
		t.Errorf("policies: %+v, %v", all, err)
	}
}

func names(as []*store.Agent) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Name)
	}
	slices.Sort(out)
	return out
}

func testClaim(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	for i, due := range []time.Duration{0, time.Second, time.Minute} {
		r := reg(fmt.Sprintf("h%d", i), "127.0.0.1:1")
		r.NextDue = t0.Add(due)
		mustRegister(t, s, r)
	}
	push := store.Registration{Name: "p", Mode: store.ModePush, CertSHA256: "cc", NextDue: t0, Now: t0}
	mustRegister(t, s, push)
	req := store.ClaimRequest{Owner: "r1", Now: t0.Add(time.Second), Lease: 10 * time.Second, Limit: 10, PushGrace: 5 * time.Second}
	got, err := s.Claim(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got); !slices.Equal(n, []string{"h0", "h1"}) {
		t.Errorf("claimed %v, want [h0 h1] (h2 is not due, the push agent is within its grace)", n)
	}
	for _, a := range got {
		if a.LeaseOwner != "r1" || !a.LeaseUntil.Equal(t0.Add(11*time.Second)) {
			t.Errorf("%s: lease %q until %v", a.Name, a.LeaseOwner, a.LeaseUntil)
		}
	}
	// Leased: nobody else gets them while the lease runs.
	req.Owner, req.Now = "r2", t0.Add(4*time.Second)
	if got, err := s.Claim(ctx, req); err != nil || len(got) != 0 {
		t.Errorf("during the lease: claimed %v, %v", names(got), err)
	}
	// The push agent, past its grace: claimed (to be found unreachable).
	req.Now = t0.Add(6 * time.Second)
	if got, err := s.Claim(ctx, req); err != nil || !slices.Equal(names(got), []string{"p"}) {
		t.Errorf("late push agent: claimed %v, %v", names(got), err)
	}
	// After the lease, another replica takes them over; Limit holds.
	req.Owner, req.Now, req.Limit = "r3", t0.Add(12*time.Second), 1
	got, err = s.Claim(ctx, req)
	if err != nil || len(got) != 1 || got[0].Name != "h0" {
		t.Errorf("after the lease, limit 1: %v, %v; want [h0] (the most overdue)", names(got), err)
	}
	if got, err := s.Claim(ctx, store.ClaimRequest{Owner: "x", Now: t0, Limit: 0}); err != nil || got != nil {
		t.Errorf("limit 0: %v, %v", got, err)
	}
}

// testClaimConcurrent has replicas claim at once: every due agent goes
// to exactly one of them.
func testClaimConcurrent(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	const n = 60
	for i := range n {
		mustRegister(t, s, reg(fmt.Sprintf("h%02d", i), "127.0.0.1:1"))
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 8 {
		wg.Go(func() {
			owner := fmt.Sprintf("replica%d", r)
			for {
				got, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Now: t0, Lease: time.Minute, Limit: 3})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, a := range got {
					if prev, dup := seen[a.Name]; dup {
						errs <- fmt.Errorf("%s claimed by %s and %s", a.Name, prev, owner)
					}
					seen[a.Name] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != n {
		t.Errorf("%d agents claimed, want %d", len(seen), n)
	}
}

func claimOne(t *testing.T, s store.Store, owner string, now time.Time) *store.Agent {
	t.Helper()
	got, err := s.Claim(t.Context(), store.ClaimRequest{Owner: owner, Now: now, Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", names(got), err)
	}
	return got[0]
}

func alertAll(prev, next string) bool { return prev != "" || next != "compliant" }

func testComplete(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	mustRegister(t, s, reg("web1", "127.0.0.1:1"))
	a := claimOne(t, s, "r1", t0)
	o := &store.Outcome{Agent: "web1", Owner: "r1", FromVersion: a.StateVersion, State: []byte("s1"),
		AKPublic: []byte{7}, Pinned: "tofu", Status: "compliant", Verdict: []byte(`{"status":"compliant"}`),
		PolicyVersion: 1, Started: t0, At: t0.Add(time.Second), NextDue: t0.Add(time.Minute),
		Webhooks: []string{"http://127.0.0.1:1/hook"}, Alert: alertAll}
	if err := s.Complete(ctx, o); err != nil {
		t.Fatal(err)
	}
	a, _ = s.Agent(ctx, "web1")
	if a.StateVersion != 1 || string(a.State) != "s1" || a.Status != "compliant" || a.LeaseOwner != "" ||
		!a.NextDue.Equal(t0.Add(time.Minute)) || !bytes.Equal(a.AKPublic, []byte{7}) || a.Pinned != "tofu" {
		t.Errorf("after the first verification: %+v", a)
	}
	v, err := s.Verdict(ctx, "web1")
	if err != nil || v.Status != "compliant" || string(v.Verdict) != `{"status":"compliant"}` || v.StateVersion != 1 || !v.Since.Equal(t0.Add(time.Second)) {
		t.Errorf("verdict: %+v, %v", v, err)
	}
	// A second compliant round: no transition, since stays.
	a = claimOne(t, s, "r1", t0.Add(time.Minute))
	o2 := *o
	o2.FromVersion, o2.State, o2.AKPublic, o2.At = a.StateVersion, []byte("s2"), nil, t0.Add(61*time.Second)
	if err := s.Complete(ctx, &o2); err != nil {
		t.Fatal(err)
	}
	// Non-compliant: a transition with its verdict and one outbox row.
	a = claimOne(t, s, "r1", t0.Add(2*time.Minute))
	o3 := o2
	o3.FromVersion, o3.State, o3.Status, o3.Reason, o3.At = a.StateVersion, []byte("s3"), "non-compliant", "record 9: forbid_unmeasured", t0.Add(121*time.Second)
	o3.Verdict = []byte(`{"status":"non-compliant"}`)
	if err := s.Complete(ctx, &o3); err != nil {
		t.Fatal(err)
	}
	// Unreachable: the state stays, failures counted.
	a = claimOne(t, s, "r1", t0.Add(3*time.Minute))
	o4 := store.Outcome{Agent: "web1", Owner: "r1", FromVersion: a.StateVersion, Status: "unreachable", Reason: "quote: Unavailable",
		Started: t0.Add(3 * time.Minute), At: t0.Add(181 * time.Second), NextDue: t0.Add(5 * time.Minute), Failures: 1,
		Webhooks: o.Webhooks, Alert: alertAll}
	if err := s.Complete(ctx, &o4); err != nil {
		t.Fatal(err)
	}
	a, _ = s.Agent(ctx, "web1")
	if a.StateVersion != 3 || string(a.State) != "s3" || a.Failures != 1 || a.Status != "unreachable" {
		t.Errorf("after unreachable: version %d state %q failures %d status %s", a.StateVersion, a.State, a.Failures, a.Status)
	}
	v, _ = s.Verdict(ctx, "web1")
	if v.Status != "unreachable" || v.Verdict != nil || v.Reason != "quote: Unavailable" || !v.Since.Equal(t0.Add(181*time.Second)) {
		t.Errorf("verdict after unreachable: %+v", v)
	}
	hist, err := s.History(ctx, "web1", store.HistoryFilter{})
	if err != nil || len(hist) != 4 {
		t.Fatalf("history: %d rows, %v", len(hist), err)
	}
	want := []struct {
		status, prev string
		transition   bool
		from, to     int64
	}{{"unreachable", "non-compliant", true, 3, 3}, {"non-compliant", "compliant", true, 2, 3}, {"compliant", "compliant", false, 1, 2}, {"compliant", "", true, 0, 1}}
	for i, w := range want {
		h := hist[i]
		if h.Status != w.status || h.PrevStatus != w.prev || h.Transition != w.transition || h.FromVersion != w.from || h.ToVersion != w.to || h.Owner != "r1" {
			t.Errorf("history[%d] = %+v, want %+v", i, h, w)
		}
		if (h.Verdict != nil) != (w.transition && w.status != "unreachable") {
			t.Errorf("history[%d]: verdict kept %v", i, h.Verdict != nil)
		}
	}
	tr, _ := s.History(ctx, "web1", store.HistoryFilter{TransitionsOnly: true, Limit: 2})
	if len(tr) != 2 || tr[0].Status != "unreachable" || tr[1].Status != "non-compliant" {
		t.Errorf("transitions, limit 2: %+v", tr)
	}
	// Outbox: compliant→non-compliant and non-compliant→unreachable;
	// the first compliant verdict alerts nobody.
	sum, err := s.Summary(ctx, t0.Add(4*time.Minute))
	if err != nil || sum.WebhookBacklog != 2 || sum.Agents != 1 || sum.ByStatus["unreachable"] != 1 {
		t.Errorf("summary: %+v, %v", sum, err)
	}
}

// testCompleteCAS: a verification that lost its lease, or that read a
// state version another verification already advanced, writes nothing.
func testCompleteCAS(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	mustRegister(t, s, reg("web1", "127.0.0.1:1"))
	a := claimOne(t, s, "r1", t0)
	o := &store.Outcome{Agent: "web1", Owner: "r1", FromVersion: a.StateVersion, State: []byte("s1"), Status: "compliant",
		Started: t0, At: t0, NextDue: t0}
	if err := s.Complete(ctx, o); err != nil {
		t.Fatal(err)
	}
	// The same outcome again (the lease is gone, the version moved on).
	if err := s.Complete(ctx, o); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("completed twice: %v, want ErrLeaseLost", err)
	}
	// r1's lease expires, r2 takes the agent; r1's late answer loses.
	claimOne(t, s, "r1", t0.Add(time.Second))
	b := claimOne(t, s, "r2", t0.Add(2*time.Minute))
	late := &store.Outcome{Agent: "web1", Owner: "r1", FromVersion: 1, State: []byte("late"), Status: "compliant", At: t0, NextDue: t0}
	if err := s.Complete(ctx, late); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("late owner: %v, want ErrLeaseLost", err)
	}
	stale := &store.Outcome{Agent: "web1", Owner: "r2", FromVersion: 0, State: []byte("stale"), Status: "compliant", At: t0, NextDue: t0}
	if err := s.Complete(ctx, stale); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("stale version: %v, want ErrLeaseLost", err)
	}
	ok := &store.Outcome{Agent: "web1", Owner: "r2", FromVersion: b.StateVersion, State: []byte("s2"), Status: "compliant", At: t0, NextDue: t0}
	if err := s.Complete(ctx, ok); err != nil {
		t.Fatal(err)
	}
	a, _ = s.Agent(ctx, "web1")
	if a.StateVersion != 2 || string(a.State) != "s2" {
		t.Errorf("state %q version %d, want s2 at 2", a.State, a.StateVersion)
	}
	hist, _ := s.History(ctx, "web1", store.HistoryFilter{})
	if len(hist) != 2 {
		t.Errorf("%d history rows, want 2 (refused outcomes leave none)", len(hist))
	}
	// Deleted under a lease: the outcome is refused.
	claimOne(t, s, "r3", t0.Add(time.Hour))
	if err := s.Delete(ctx, "web1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, &store.Outcome{Agent: "web1", Owner: "r3", FromVersion: 2, Status: "compliant"}); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("deleted agent: %v, want ErrLeaseLost", err)
	}
}

func testPushChallenge(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	mustRegister(t, s, store.Registration{Name: "edge", Mode: store.ModePush, CertSHA256: "ab", NextDue: t0, Now: t0})
	mustRegister(t, s, reg("pull", "127.0.0.1:1"))
	a, err := s.ClaimAgent(ctx, "edge", "push:1", []byte("nonce"), t0, time.Minute)
	if err != nil || a.LeaseOwner != "push:1" || string(a.Challenge) != "nonce" {
		t.Fatalf("challenge: %+v, %v", a, err)
	}
	if _, err := s.ClaimAgent(ctx, "edge", "push:2", []byte("other"), t0.Add(time.Second), time.Minute); !errors.Is(err, store.ErrBusy) {
		t.Errorf("second challenge during the first: %v, want ErrBusy", err)
	}
	if _, err := s.ClaimAgent(ctx, "pull", "push:3", nil, t0, time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pull agent: %v, want ErrNotFound", err)
	}
	if _, err := s.ClaimAgent(ctx, "nosuch", "push:3", nil, t0, time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown agent: %v, want ErrNotFound", err)
	}
	if err := s.Complete(ctx, &store.Outcome{Agent: "edge", Owner: "push:1", State: []byte("s"), Status: "compliant", At: t0, NextDue: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Agent(ctx, "edge"); a.Challenge != nil || a.LeaseOwner != "" || a.StateVersion != 1 {
		t.Errorf("after the upload: %+v", a)
	}
	// An expired challenge can be replaced.
	if _, err := s.ClaimAgent(ctx, "edge", "push:4", []byte("n"), t0, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimAgent(ctx, "edge", "push:5", []byte("n"), t0.Add(2*time.Second), time.Second); err != nil {
		t.Errorf("after the challenge expired: %v", err)
	}
	if err := s.Release(ctx, "push:5"); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Agent(ctx, "edge"); a.LeaseOwner != "" {
		t.Errorf("released: lease %q", a.LeaseOwner)
	}
}

func testDeliveries(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	mustRegister(t, s, reg("web1", "127.0.0.1:1"))
	a := claimOne(t, s, "r1", t0)
	hooks := []string{"http://127.0.0.1:1/a", "http://127.0.0.1:1/b"}
	if err := s.Complete(ctx, &store.Outcome{Agent: "web1", Owner: "r1", FromVersion: a.StateVersion, Status: "non-compliant",
		Reason: "bad", Verdict: []byte(`{}`), At: t0, NextDue: t0, Webhooks: hooks, Alert: alertAll}); err != nil {
		t.Fatal(err)
	}
	ds, err := s.ClaimDeliveries(ctx, "w1", t0, time.Minute, 10)
	if err != nil || len(ds) != 2 {
		t.Fatalf("claim deliveries: %d, %v", len(ds), err)
	}
	for _, d := range ds {
		if d.Attempts != 1 || d.Event.Agent != "web1" || d.Event.Status != "non-compliant" || d.Event.PrevStatus != "" || d.Event.Reason != "bad" {
			t.Errorf("delivery: %+v", d)
		}
	}
	if again, _ := s.ClaimDeliveries(ctx, "w2", t0.Add(time.Second), time.Minute, 10); len(again) != 0 {
		t.Errorf("leased deliveries claimed again: %d", len(again))
	}
	if err := s.Delivered(ctx, ds[0].ID, "w1", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delivered(ctx, ds[1].ID, "w2", t0); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("delivered by a non-owner: %v", err)
	}
	if err := s.Retry(ctx, ds[1].ID, "w1", t0.Add(10*time.Second), "503"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ClaimDeliveries(ctx, "w1", t0.Add(5*time.Second), time.Minute, 10); len(got) != 0 {
		t.Errorf("retry before its time: %d", len(got))
	}
	got, _ := s.ClaimDeliveries(ctx, "w1", t0.Add(10*time.Second), time.Minute, 10)
	if len(got) != 1 || got[0].Attempts != 2 || got[0].URL != hooks[1] {
		t.Fatalf("retry: %+v", got)
	}
	if sum, _ := s.Summary(ctx, t0); sum.WebhookBacklog != 1 || sum.WebhookFailed != 0 {
		t.Errorf("backlog %d failed %d, want 1 0", sum.WebhookBacklog, sum.WebhookFailed)
	}
	if err := s.Retry(ctx, got[0].ID, "w1", time.Time{}, "gave up"); err != nil {
		t.Fatal(err)
	}
	if sum, _ := s.Summary(ctx, t0); sum.WebhookBacklog != 0 || sum.WebhookFailed != 1 {
		t.Errorf("after giving up: backlog %d failed %d, want 0 1", sum.WebhookBacklog, sum.WebhookFailed)
	}
}

func testListing(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	for i := range 5 {
		mustRegister(t, s, reg(fmt.Sprintf("h%d", i), fmt.Sprintf("127.0.0.1:%d", 7000+i)))
	}
	statuses := []string{"compliant", "compliant", "non-compliant", "unreachable"}
	for i, st := range statuses {
		name := fmt.Sprintf("h%d", i)
		got, err := s.Claim(ctx, store.ClaimRequest{Owner: "r", Now: t0, Lease: time.Minute, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			next := t0.Add(time.Minute)
			if a.Name == name {
				if err := s.Complete(ctx, &store.Outcome{Agent: a.Name, Owner: "r", FromVersion: a.StateVersion, Status: st, Reason: "r-" + st,
					At: t0, NextDue: next}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Release(ctx, "r"); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Agents(ctx, store.AgentFilter{})
	if err != nil || len(all) != 5 || all[0].Name != "h0" || all[0].Status != "compliant" || all[0].Reason != "r-compliant" || all[4].Status != "" {
		t.Errorf("all agents: %+v, %v", all, err)
	}
	if got, _ := s.Agents(ctx, store.AgentFilter{Status: "compliant"}); len(got) != 2 {
		t.Errorf("compliant: %d, want 2", len(got))
	}
	if got, _ := s.Agents(ctx, store.AgentFilter{Status: "none"}); len(got) != 1 || got[0].Name != "h4" {
		t.Errorf("never verified: %+v", got)
	}
	if got, _ := s.Agents(ctx, store.AgentFilter{After: "h1", Limit: 2}); len(got) != 2 || got[0].Name != "h2" || got[1].Name != "h3" {
		t.Errorf("page after h1: %+v", got)
	}
	sum, err := s.Summary(ctx, t0.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Agents != 5 || sum.ByStatus["compliant"] != 2 || sum.ByStatus["non-compliant"] != 1 || sum.ByStatus["unreachable"] != 1 ||
		sum.ByStatus["none"] != 1 || sum.Due != 1 || !sum.OldestDue.Equal(t0) {
		t.Errorf("summary: %+v", sum)
	}
}

func testPruneAndDelete(t *testing.T, s store.Store, _ Opener) {
	ctx := t.Context()
	mustRegister(t, s, reg("web1", "127.0.0.1:1"))
	for i, st := range []string{"compliant", "compliant", "compliant", "non-compliant"} {
		now := t0.Add(time.Duration(i) * time.Hour)
		a := claimOne(t, s, "r", now)
		if err := s.Complete(ctx, &store.Outcome{Agent: "web1", Owner: "r", FromVersion: a.StateVersion, Status: st, At: now, NextDue: now,
			Webhooks: []string{"http://127.0.0.1:1/"}, Alert: alertAll}); err != nil {
			t.Fatal(err)
		}
	}
	// Rounds older than 2h30 go; transitions stay (the first one's
	// verdict, and the pending delivery's event).
	n, err := s.Prune(ctx, t0.Add(150*time.Minute), t0)
	if err != nil || n != 2 {
		t.Errorf("pruned %d, %v; want 2 rounds", n, err)
	}
	hist, _ := s.History(ctx, "web1", store.HistoryFilter{})
	if len(hist) != 2 || hist[0].Status != "non-compliant" || hist[1].PrevStatus != "" {
		t.Errorf("kept %+v", hist)
	}
	// Transitions older than the cut go too, but not an event whose
	// delivery is pending.
	if _, err := s.Prune(ctx, t0.Add(10*time.Hour), t0.Add(10*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if hist, _ := s.History(ctx, "web1", store.HistoryFilter{}); len(hist) != 1 || hist[0].Status != "non-compliant" {
		t.Errorf("after pruning transitions: %+v", hist)
	}
	if err := s.Delete(ctx, "web1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verdict(ctx, "web1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("verdict after delete: %v", err)
	}
	if hist, _ := s.History(ctx, "web1", store.HistoryFilter{}); len(hist) != 0 {
		t.Errorf("history after delete: %d rows", len(hist))
	}
	if sum, _ := s.Summary(ctx, t0); sum.Agents != 0 || sum.WebhookBacklog != 0 {
		t.Errorf("summary after delete: %+v", sum)
	}
	if err := s.Delete(ctx, "web1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}
