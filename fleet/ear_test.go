package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/ear"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
	"github.com/bpfattest/bpfattest/verifier"
)

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEARConfig: EAR options without a key, a negative validity, a key
// too weak to sign and an algorithm that is not the key's are refused at
// New, not at the first verdict.
func TestEARConfig(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	k := p256(t)
	for name, cfg := range map[string]Config{
		"validity without a key":  {EARValidity: time.Hour},
		"algorithm without a key": {EARAlgorithm: ear.ES256},
		"omit without a key":      {EAROmitVerdict: true},
		"negative validity":       {EARKey: k, EARValidity: -time.Second},
		"1024-bit RSA":            {EARKey: weak},
		"algorithm not the key's": {EARKey: k, EARAlgorithm: ear.PS256},
		"algorithm not supported": {EARKey: k, EARAlgorithm: "HS256"},
	} {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store = st
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
		st.Close()
	}
	s, err := newEARSigner(&Config{EARKey: k})
	if err != nil || s.alg != ear.ES256 || s.kid == "" {
		t.Errorf("a P-256 key: %+v, %v", s, err)
	}
}

// TestEARSizeBound: a verdict whose token with the verdict extension
// would pass MaxEARSize is signed without it (same status and vector);
// a small one keeps it.
func TestEARSizeBound(t *testing.T) {
	k := p256(t)
	s, err := newEARSigner(&Config{EARKey: k})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	small := &verifier.Verdict{Host: "web1", Status: verifier.StatusNonCompliant,
		Violations: []verifier.Violation{{Record: 3, Artifact: "x", Rule: "forbid_unmeasured", Reason: "unmeasured"}}}
	big := *small
	for i := range 2_000 {
		big.Violations = append(big.Violations, verifier.Violation{Record: uint64(i), Artifact: fmt.Sprintf("prog%05d", i),
			Rule: "forbid_unmeasured", Reason: strings.Repeat("unmeasured ", 60)})
	}
	for _, c := range []struct {
		name        string
		v           *verifier.Verdict
		wantVerdict bool
	}{{"small", small, true}, {"big", &big, false}} {
		tok, err := s.sign(c.v, at, ear.PolicyID([]byte("version: 1\n")))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(tok) > MaxEARSize {
			t.Errorf("%s: %d bytes", c.name, len(tok))
		}
		got, err := ear.Verify(tok, k.Public(), ear.VerifyOptions{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		a := got.Claims.Submods[ear.SubmodLabel]
		if (a.Verdict != nil) != c.wantVerdict || a.Status != ear.TierContraindicated || got.Claims.Subject != "web1" || got.Claims.IssuedAt != at.Unix() {
			t.Errorf("%s: verdict kept %v, status %s, subject %q, iat %d", c.name, a.Verdict != nil, a.Status, got.Claims.Subject, got.Claims.IssuedAt)
		}
	}
}

// TestLatestEARRefuses: an unknown agent is not found; an agent never
// verified, and one whose verdict was recorded without an EAR, has none,
// and the error says why (a service without a key names --ear-key).
func TestLatestEARRefuses(t *testing.T) {
	for _, withKey := range []bool{false, true} {
		cfg := Config{Interval: time.Hour}
		if withKey {
			cfg.EARKey = p256(t)
		}
		s := newTestService(t, cfg)
		ctx := t.Context()
		if _, err := s.LatestEAR(ctx, "nosuch"); !errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNoEAR) {
			t.Errorf("key %v: unknown agent: %v", withKey, err)
		}
		now := time.Now()
		if err := s.st.Register(ctx, store.Registration{Name: "web1", Mode: store.ModePull, Address: "127.0.0.1:1", NextDue: now, Now: now}); err != nil {
			t.Fatal(err)
		}
		_, err := s.LatestEAR(ctx, "web1")
		if !errors.Is(err, ErrNoEAR) || !strings.Contains(err.Error(), "not verified yet") || strings.Contains(err.Error(), "--ear-key") == withKey {
			t.Errorf("key %v: never verified: %v", withKey, err)
		}
		as, err := s.st.Claim(ctx, store.ClaimRequest{Owner: "x", Now: now, Lease: time.Minute, Limit: 1})
		if err != nil || len(as) != 1 {
			t.Fatal(as, err)
		}
		// Recorded by a node without a key.
		if err := s.st.Complete(ctx, &store.Outcome{Agent: "web1", Owner: "x", Status: verifier.StatusUnreachable, Reason: "r",
			At: now, NextDue: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err = s.LatestEAR(ctx, "web1")
		want := "--ear-key"
		if withKey {
			want = "recorded without one"
		}
		if !errors.Is(err, ErrNoEAR) || !strings.Contains(err.Error(), want) {
			t.Errorf("key %v: verdict without an EAR: %v, want it to say %q", withKey, err, want)
		}
	}
}

// TestEARWithoutPolicy: a verification that could not start (the agent's
// policy does not exist) is recorded with an EAR too, which names no
// appraisal policy and says the host could not be verified.
func TestEARWithoutPolicy(t *testing.T) {
	k := p256(t)
	s := newTestService(t, Config{Interval: time.Second, Poll: 20 * time.Millisecond, EARKey: k})
	ctx := t.Context()
	if err := s.Register(ctx, []AgentSpec{{Name: "web1", Address: "127.0.0.1:1", Policy: "nosuch"}}); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	var v *store.Verdict
	for {
		var err error
		if v, err = s.LatestEAR(ctx, "web1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no EAR: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := ear.Verify(v.EAR, k.Public(), ear.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := got.Claims.Submods[ear.SubmodLabel]
	if v.Status != verifier.StatusUnverified || a.Verdict == nil || a.Verdict.Status != verifier.StatusUnverified ||
		!strings.Contains(a.Verdict.Reason, `policy "nosuch"`) || len(a.PolicyIDs) != 0 || len(a.Nonce) != 0 {
		t.Errorf("status %s; EAR submod %+v", v.Status, a)
	}
}
