package fleet

import (
	"context"
	"time"
)

// summaryEvery is how often the fleet gauges are refreshed from the store.
const summaryEvery = 2 * time.Second

// pruneEvery is how often old history rows are deleted.
const pruneEvery = time.Minute

// maintain refreshes the fleet gauges and prunes the history until ctx is
// done.
func (s *Service) maintain(ctx context.Context) {
	t := time.NewTicker(summaryEvery)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		now := time.Now()
		s.refreshGauges(ctx, now)
		if now.Sub(lastPrune) >= pruneEvery {
			lastPrune = now
			n, err := s.st.Prune(ctx, now.Add(-s.cfg.RoundRetention), now.Add(-s.cfg.TransitionRetention))
			if err != nil && ctx.Err() == nil {
				s.log.Warn("prune", "err", err)
			} else if n > 0 {
				s.log.Debug("pruned history", "rows", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) refreshGauges(ctx context.Context, now time.Time) {
	sum, err := s.st.Summary(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("summary", "err", err)
		}
		return
	}
	s.metrics.agents.Reset()
	for st, n := range sum.ByStatus {
		s.metrics.agents.WithLabelValues(st).Set(float64(n))
	}
	lag := time.Duration(0)
	if !sum.OldestDue.IsZero() && sum.OldestDue.Before(now) {
		lag = now.Sub(sum.OldestDue)
	}
	s.metrics.queueLag.Set(lag.Seconds())
	s.metrics.due.Set(float64(sum.Due))
	s.metrics.backlog.Set(float64(sum.WebhookBacklog))
	s.metrics.failedHooks.Set(float64(sum.WebhookFailed))
	open, dials := s.pool.size()
	s.metrics.conns.Set(float64(open))
	s.metrics.dials.Set(float64(dials))
}
