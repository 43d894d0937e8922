package service

import (
	"slices"
	"sync"
	"time"
)

// maxBuckets bounds the clients the limiter tracks; past it, buckets that
// have refilled completely (idle clients) are dropped.
const maxBuckets = 4096

// limiter is a token bucket per client: each client may spend burst
// requests at once and regains rate tokens per second.
type limiter struct {
	rate  float64 // tokens per second; <= 0 disables the limit
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket // guarded by mu
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	if burst < 1 {
		burst = 1
	}
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
}

// allow spends one token of client's bucket and reports whether it had one.
func (l *limiter) allow(client string) bool {
	if l.rate <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.evictFull(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
	}
	b.last = now
}

// evictFull drops the buckets that have refilled: forgetting them changes
// nothing for their clients. If that frees less than an eighth of the
// table, the least recently used buckets go too, so eviction runs at most
// once per maxBuckets/8 new clients.
func (l *limiter) evictFull(now time.Time) {
	type entry struct {
		key  string
		last time.Time
	}
	busy := make([]entry, 0, len(l.buckets))
	for k, b := range l.buckets {
		last := b.last
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
			continue
		}
		busy = append(busy, entry{k, last})
	}
	excess := len(l.buckets) - (maxBuckets - maxBuckets/8)
	if excess <= 0 {
		return
	}
	slices.SortFunc(busy, func(a, b entry) int { return a.last.Compare(b.last) })
	for _, e := range busy[:excess] {
		delete(l.buckets, e.key)
	}
}
