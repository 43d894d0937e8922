package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestLimiter proves the token bucket on an injected clock: a client gets
// its burst at once, then rate tokens per second, and clients do not share
// buckets.
func TestLimiter(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := New(2, 3, clk.now)
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.Allow("a") {
		t.Fatal("request past the burst allowed")
	}
	if !l.Allow("b") {
		t.Fatal("another client shares a's bucket")
	}
	clk.advance(499 * time.Millisecond)
	if l.Allow("a") {
		t.Fatal("token granted before 1/rate elapsed")
	}
	clk.advance(time.Millisecond)
	if !l.Allow("a") {
		t.Fatal("token not granted after 1/rate")
	}
	if l.Allow("a") {
		t.Fatal("one refill granted two tokens")
	}
	clk.advance(time.Hour)
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("bucket not refilled to the burst: request %d refused", i)
		}
	}
	if l.Allow("a") {
		t.Fatal("refill exceeded the burst")
	}
}

func TestLimiterDisabled(t *testing.T) {
	l := New(-1, 1, time.Now)
	for range 100 {
		if !l.Allow("a") {
			t.Fatal("disabled limiter refused")
		}
	}
}

// TestLimiterBounded proves the limiter's memory is bounded by maxBuckets
// however many clients appear, and that eviction forgets the least recently
// seen clients: a client that just spent its budget keeps it spent.
func TestLimiterBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := New(0.001, 2, clk.now)
	for i := range 3 * maxBuckets {
		clk.advance(time.Millisecond)
		l.Allow(fmt.Sprint("client-", i))
		if len(l.buckets) > maxBuckets {
			t.Fatalf("%d buckets after %d clients", len(l.buckets), i+1)
		}
	}
	l.Allow("hot")
	if l.Allow("hot"); l.Allow("hot") {
		t.Fatal("hot client not limited")
	}
	for i := range maxBuckets {
		clk.advance(time.Millisecond)
		l.Allow(fmt.Sprint("late-", i))
		if l.Allow("hot") {
			t.Fatalf("hot client regained a token after %d new clients", i+1)
		}
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := New(1e9, 1000, time.Now)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("ip:10.0.", i/256, ".", i%256)
	}
	i := 0
	for b.Loop() {
		l.Allow(keys[i%len(keys)])
		i++
	}
}

// TestTake: Take spends the burst without a wait, then owes the rest and
// says how long paying it back takes; the debt is paid by the clock, and a
// disabled limiter never asks for a wait.
func TestTake(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := New(1000, 1500, clk.now)
	if d := l.Take("a", 1000); d != 0 {
		t.Fatalf("within the burst: wait %v, want 0", d)
	}
	if d := l.Take("a", 1000); d != 500*time.Millisecond {
		t.Fatalf("500 past the burst: wait %v, want 500ms", d)
	}
	if d := l.Take("a", 1000); d != 1500*time.Millisecond {
		t.Fatalf("1,500 in debt: wait %v, want 1.5s", d)
	}
	if d := l.Take("b", 1000); d != 0 {
		t.Fatalf("another client: wait %v, want 0", d)
	}
	clk.advance(1500 * time.Millisecond)
	if d := l.Take("a", 1); d != time.Millisecond {
		t.Fatalf("debt paid by the clock but one token: wait %v, want 1ms", d)
	}
	if d := New(-1, 1, clk.now).Take("a", 1e9); d != 0 {
		t.Fatalf("disabled: wait %v", d)
	}
}
