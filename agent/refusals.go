package agent

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/ratelimit"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// Refused loads grow the log by two records each (the measurement, the
// refusal). A requester that keeps sending artifacts the policy refuses
// gets RefusalLogRate of them recorded one by one per second; the rest are
// measured and refused all the same, and counted: a "refusals counted"
// record (measure.Refusals) carries the counts per requester and verdict.
// Requests the API turns away before they are measured (over the load rate
// or the loads and bytes taken in at once, CountThrottled) are counted in
// the same record. The counts are written at least every
// refusalFlushInterval while any are pending, before every quote and when
// the agent closes, so no request a client was answered is missing from a
// quote asked after the answer.

// maxCountedRequesters bounds the requesters counted between two records;
// past it, further requesters are counted together under uid and gid
// math.MaxUint32 ("others").
const maxCountedRequesters = 4 * measure.MaxRefusalRequesters

// refusalCounter limits refusal records per requester and holds the counts
// not yet written.
type refusalCounter struct {
	limit *ratelimit.Limiter // refusal records per requester uid

	mu      sync.Mutex
	pending map[[2]uint32]*measure.RefusalCount // guarded by mu; by uid, gid
}

func newRefusalCounter(rate float64, burst int) *refusalCounter {
	return &refusalCounter{limit: ratelimit.New(rate, burst, nil), pending: map[[2]uint32]*measure.RefusalCount{}}
}

// recordable spends one of uid's refusal records, and reports whether it
// had one.
func (c *refusalCounter) recordable(uid uint32) bool {
	return c.limit.Allow(fmt.Sprint("uid:", uid))
}

// count adds one request to (uid, gid)'s counts: refused with verdict v,
// or throttled.
func (c *refusalCounter) count(uid, gid uint32, refused bool, v cms.Verdict) {
	now := bpfsys.BootTimeNS()
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]uint32{uid, gid}
	e, ok := c.pending[key]
	if !ok && len(c.pending) >= maxCountedRequesters {
		key = [2]uint32{math.MaxUint32, math.MaxUint32}
		e, ok = c.pending[key]
	}
	if !ok {
		e = &measure.RefusalCount{UID: key[0], GID: key[1], FirstNS: now}
		c.pending[key] = e
	}
	e.LastNS = max(e.LastNS, now)
	if !refused {
		e.Throttled++
		return
	}
	e.Refused++
	i, found := slices.BinarySearchFunc(e.Verdicts, v, func(x measure.VerdictCount, v cms.Verdict) int { return cmp.Compare(x.Verdict, v) })
	if !found {
		e.Verdicts = slices.Insert(e.Verdicts, i, measure.VerdictCount{Verdict: v})
	}
	e.Verdicts[i].Count++
}

// take removes up to measure.MaxRefusalRequesters requesters' counts, as
// one record's content; nil when nothing is pending.
func (c *refusalCounter) take() *measure.Refusals {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(c.pending), func(a, b [2]uint32) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	r := &measure.Refusals{}
	for _, k := range keys[:min(len(keys), measure.MaxRefusalRequesters)] {
		r.Requesters = append(r.Requesters, *c.pending[k])
		delete(c.pending, k)
	}
	return r
}

// restore puts counts taken for a record that could not be written back.
func (c *refusalCounter) restore(r *measure.Refusals) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range r.Requesters {
		key := [2]uint32{x.UID, x.GID}
		e, ok := c.pending[key]
		if !ok {
			x := x
			c.pending[key] = &x
			continue
		}
		e.Refused += x.Refused
		e.Throttled += x.Throttled
		e.FirstNS, e.LastNS = min(e.FirstNS, x.FirstNS), max(e.LastNS, x.LastNS)
		for _, v := range x.Verdicts {
			i, found := slices.BinarySearchFunc(e.Verdicts, v.Verdict, func(y measure.VerdictCount, v cms.Verdict) int { return cmp.Compare(y.Verdict, v) })
			if !found {
				e.Verdicts = slices.Insert(e.Verdicts, i, measure.VerdictCount{Verdict: v.Verdict})
			}
			e.Verdicts[i].Count += v.Count
		}
	}
}

// CountThrottled counts a load request from uid and gid that the API
// turned away before it was measured (over the requester's load rate, or
// over the loads or bytes the agent takes in at once): it goes into the
// next "refusals counted" record.
func (a *Agent) CountThrottled(uid, gid uint32) {
	a.refusals.count(uid, gid, false, 0)
	a.metrics.counted("throttled")
}

// flushRefusals writes the pending counts as "refusals counted" records,
// as many as they need. Counts whose record could not be written stay
// pending.
func (a *Agent) flushRefusals(ctx context.Context) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	if a.jr.Mismatch() != nil {
		// The log takes no more records this boot (someone else
		// extended the PCR); the counts stay in memory, bounded.
		return nil
	}
	for {
		r := a.refusals.take()
		if r == nil {
			return nil
		}
		content, err := r.MarshalBinary()
		if err != nil {
			// Counts the agent made itself always encode; if not, they
			// stay pending and the failure is seen.
			a.refusals.restore(r)
			return fmt.Errorf("encode counted refusals: %w", err)
		}
		if _, err := a.appendRecord(ctx, cel.BPFRefusals, content); err != nil {
			a.refusals.restore(r)
			return fmt.Errorf("record counted refusals: %w", err)
		}
	}
}
