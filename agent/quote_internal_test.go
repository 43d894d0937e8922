package agent

import (
	"testing"
	"time"
)

// TestQuotePacing: quotes that all hold the TPM for d start d/share apart;
// one slowed quote delays the next by a quarter of its excess, and a
// lasting change is followed.
func TestQuotePacing(t *testing.T) {
	q := &quoter{a: &Agent{set: settings{Config: Config{QuoteTPMShare: 0.5}}}}
	t0 := time.Unix(1_700_000_000, 0)
	step := func(start time.Time, d, wantRest time.Duration) {
		t.Helper()
		q.spent(start, d)
		if got := q.next.Sub(start); got != wantRest {
			t.Errorf("after a %v quote: next %v after its start, want %v", d, got, wantRest)
		}
	}
	ms := time.Millisecond
	step(t0, 200*ms, 400*ms)
	step(t0.Add(400*ms), 200*ms, 400*ms)
	// One quote 2 s long: the average moves a quarter of the way.
	step(t0.Add(800*ms), 2000*ms, 1300*ms)
	// Back to 200 ms: the average comes back down.
	step(t0.Add(2800*ms), 200*ms, 1075*ms)
	// A TPM that became slow for good: the rest converges to d/share.
	start := t0.Add(4 * time.Second)
	for range 40 {
		q.spent(start, 1000*ms)
		start = start.Add(2 * time.Second)
	}
	if got := q.next.Sub(start.Add(-2 * time.Second)); got < 1990*ms || got > 2000*ms {
		t.Errorf("after 40 quotes of 1 s at share 0.5: next %v after the last began, want 2 s", got)
	}
}
