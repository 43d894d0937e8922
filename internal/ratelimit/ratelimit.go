package ratelimit

import (
	"slices"
	"sync"
	"time"
)

// maxBuckets bounds the clients a Limiter tracks; past it, buckets that
// have refilled completely (idle clients) are dropped.
const maxBuckets = 4096

// Limiter is a token bucket per client: each client may spend burst
// requests at once and regains rate tokens per second. It is safe for
// concurrent use, and its memory is bounded (maxBuckets clients).
type Limiter struct {
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

// New returns a Limiter of rate tokens per second and a bucket of burst
// tokens (at least 1) per client, on the clock now (nil: time.Now). A rate
// of zero or less disables the limit: every request is allowed.
func New(rate float64, burst int, now func() time.Time) *Limiter {
	if burst < 1 {
		burst = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
}

// Allow spends one token of client's bucket and reports whether it had one.
func (l *Limiter) Allow(client string) bool {
	if l.rate <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(client, now)
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Take spends n tokens of client's bucket, going into debt when it holds
// fewer, and returns how long until the bucket is out of debt: how long
// the caller waits to keep to the rate (0 when it had the tokens, or the
// limit is disabled). Callers that wait keep a client, together, to rate
// tokens a second after its burst, in the order they took.
func (l *Limiter) Take(client string, n float64) time.Duration {
	if l.rate <= 0 {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(client, now)
	l.refill(b, now)
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / l.rate * float64(time.Second))
}

// bucket returns client's bucket, made full if it has none. l.mu must be
// held.
func (l *Limiter) bucket(client string, now time.Time) *bucket {
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.evictFull(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	return b
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
	}
	b.last = now
}

// evictFull drops the buckets that have refilled: forgetting them changes
// nothing for their clients. If that frees less than an eighth of the
// table, the least recently used buckets go too, so eviction runs at most
// once per maxBuckets/8 new clients.
func (l *Limiter) evictFull(now time.Time) {
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
