package fleet

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
	"github.com/bpfattest/bpfattest/verifier"
)

func newTestService(t *testing.T, cfg Config) *Service {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWebhookRetried: a receiver that fails twice gets the event on the
// third attempt, with the same event id and a valid signature each time,
// and the outbox is empty afterwards.
func TestWebhookRetried(t *testing.T) {
	secret := []byte("0123456789abcdef")
	var mu sync.Mutex
	var ids []string
	var bodies []Webhook
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := VerifyWebhook(secret, r.Header.Get(SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("signature: %v", err)
		}
		ids = append(ids, r.Header.Get(EventIDHeader))
		if len(ids) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev Webhook
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Error(err)
		}
		bodies = append(bodies, ev)
	}))
	defer rx.Close()
	s := newTestService(t, Config{Interval: time.Hour, Poll: 50 * time.Millisecond, Webhooks: []string{rx.URL}, WebhookSecret: secret})
	ctx := t.Context()
	now := time.Now()
	if err := s.st.Register(ctx, store.Registration{Name: "web1", Mode: store.ModePull, Address: "127.0.0.1:1", NextDue: now, Now: now}); err != nil {
		t.Fatal(err)
	}
	as, err := s.st.Claim(ctx, store.ClaimRequest{Owner: "x", Now: now, Lease: time.Minute, Limit: 1})
	if err != nil || len(as) != 1 {
		t.Fatal(as, err)
	}
	if err := s.st.Complete(ctx, &store.Outcome{Agent: "web1", Owner: "x", Status: verifier.StatusNonCompliant, Reason: "r",
		Verdict: []byte(`{"status":"non-compliant"}`), At: now, NextDue: now.Add(time.Hour), Webhooks: s.cfg.Webhooks, Alert: alert}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(bodies)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered; attempts %v", ids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] || bodies[0].ID != ids[0] || bodies[0].To != verifier.StatusNonCompliant ||
		bodies[0].From != "" || string(bodies[0].Verdict) != `{"status":"non-compliant"}` {
		t.Errorf("attempts %v, delivered %+v", ids, bodies)
	}
	mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	if sum, _ := s.st.Summary(ctx, time.Now()); sum.WebhookBacklog != 0 || sum.WebhookFailed != 0 {
		t.Errorf("outbox after delivery: %+v", sum)
	}
}

func TestVerifyWebhookRefuses(t *testing.T) {
	secret, body := []byte("0123456789abcdef"), []byte(`{"id":"transition-1"}`)
	now := time.Now()
	sig := SignWebhook(secret, body, now)
	if err := VerifyWebhook(secret, sig, body, now, time.Minute); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	for name, c := range map[string]struct {
		secret, body []byte
		header       string
		at           time.Time
	}{
		"other secret": {[]byte("fedcba9876543210"), body, sig, now},
		"other body":   {secret, []byte(`{"id":"transition-2"}`), sig, now},
		"stale":        {secret, body, sig, now.Add(time.Hour)},
		"no timestamp": {secret, body, "v1=00", now},
		"garbage":      {secret, body, "t=x,v1=zz", now},
	} {
		if err := VerifyWebhook(c.secret, c.header, c.body, c.at, time.Minute); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNextDue: jitter stays within its bounds; failures double the delay
// up to the cap.
func TestNextDue(t *testing.T) {
	s := newTestService(t, Config{Interval: time.Minute, MaxBackoff: 5 * time.Minute})
	now := time.Now()
	for range 100 {
		d := s.nextDue(now, 0).Sub(now)
		if d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("due in %v, want 60s ± 10%%", d)
		}
	}
	for failures, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 4: 5 * time.Minute, 50: 5 * time.Minute} {
		d := s.nextDue(now, failures).Sub(now)
		if d < want*9/10 || d > want*11/10 {
			t.Errorf("%d failures: due in %v, want %v ± 10%%", failures, d, want)
		}
	}
	for _, c := range []struct{ prev, next string }{{"", verifier.StatusCompliant}, {verifier.StatusCompliant, verifier.StatusCompliant}} {
		if alert(c.prev, c.next) {
			t.Errorf("alert %q → %q", c.prev, c.next)
		}
	}
	for _, c := range []struct{ prev, next string }{{"", verifier.StatusNonCompliant}, {verifier.StatusCompliant, verifier.StatusUnreachable},
		{verifier.StatusUnverified, verifier.StatusCompliant}} {
		if !alert(c.prev, c.next) {
			t.Errorf("no alert %q → %q", c.prev, c.next)
		}
	}
}

func openFuzzStore(f *testing.F) store.Store {
	st, err := sqlite.Open(f.Context(), filepath.Join(f.TempDir(), "fleet.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	return st
}
