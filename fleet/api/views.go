package api

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/store"
)

// The read-only views, shared by the gRPC API, the JSON API and the
// dashboard.

// Listing limits.
const (
	defaultAgents  = 1000
	maxAgents      = 10_000
	defaultHistory = 100
	maxHistory     = 10_000
)

// SummaryView is the fleet summary.
type SummaryView struct {
	Agents          int            `json:"agents"`
	ByStatus        map[string]int `json:"by_status"`
	QueueLagSeconds float64        `json:"queue_lag_seconds"`
	Due             int            `json:"due"`
	WebhookBacklog  int            `json:"webhook_backlog"`
	WebhookFailed   int            `json:"webhook_failed"`
	Interval        string         `json:"interval"`
	Replica         string         `json:"replica"`
}

func summary(ctx context.Context, svc *fleet.Service) (*SummaryView, error) {
	now := time.Now()
	s, err := svc.Store().Summary(ctx, now)
	if err != nil {
		return nil, err
	}
	v := &SummaryView{Agents: s.Agents, ByStatus: s.ByStatus, Due: s.Due, WebhookBacklog: s.WebhookBacklog,
		WebhookFailed: s.WebhookFailed, Interval: svc.Interval().String(), Replica: svc.Replica()}
	if !s.OldestDue.IsZero() && s.OldestDue.Before(now) {
		v.QueueLagSeconds = now.Sub(s.OldestDue).Seconds()
	}
	return v, nil
}

// AgentView is one agent of a listing.
type AgentView struct {
	Name       string     `json:"name"`
	Mode       string     `json:"mode"`
	Address    string     `json:"address,omitempty"`
	Policy     string     `json:"policy"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	VerifiedAt *time.Time `json:"verified_at,omitempty"`
	NextDue    time.Time  `json:"next_due"`
	Failures   int        `json:"failures,omitempty"`
}

func agentView(a store.AgentView) AgentView {
	v := AgentView{Name: a.Name, Mode: a.Mode, Address: a.Address, Policy: a.Policy, Status: a.Status, Reason: a.Reason,
		NextDue: a.NextDue.UTC(), Failures: a.Failures}
	if v.Status == "" {
		v.Status = "none"
	}
	if !a.VerifiedAt.IsZero() {
		t := a.VerifiedAt.UTC()
		v.VerifiedAt = &t
	}
	return v
}

func listAgents(ctx context.Context, svc *fleet.Service, status, after string, limit int) ([]AgentView, error) {
	if limit <= 0 {
		limit = defaultAgents
	}
	limit = min(limit, maxAgents)
	rows, err := svc.Store().Agents(ctx, store.AgentFilter{Status: status, After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]AgentView, 0, len(rows))
	for _, r := range rows {
		out = append(out, agentView(r))
	}
	return out, nil
}

// DetailView is one agent with its latest verdict.
type DetailView struct {
	AgentView
	ServerName    string          `json:"server_name,omitempty"`
	CertSHA256    string          `json:"cert_sha256,omitempty"`
	AKPinned      string          `json:"ak_pinned,omitempty"`
	StateVersion  int64           `json:"state_version"`
	PolicyVersion int             `json:"policy_version,omitempty"`
	StatusSince   *time.Time      `json:"status_since,omitempty"`
	Verdict       json.RawMessage `json:"verdict,omitempty"`
}

func agentDetail(ctx context.Context, svc *fleet.Service, name string) (*DetailView, error) {
	st := svc.Store()
	a, err := st.Agent(ctx, name)
	if err != nil {
		return nil, err
	}
	d := &DetailView{AgentView: agentView(store.AgentView{Name: a.Name, Mode: a.Mode, Address: a.Address, Policy: a.Policy,
		Status: a.Status, NextDue: a.NextDue, Failures: a.Failures}),
		ServerName: a.ServerName, CertSHA256: a.CertSHA256, AKPinned: a.Pinned, StateVersion: a.StateVersion}
	v, err := st.Verdict(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return d, nil
	case err != nil:
		return nil, err
	}
	at, since := v.At.UTC(), v.Since.UTC()
	d.VerifiedAt, d.StatusSince, d.Reason, d.PolicyVersion = &at, &since, v.Reason, v.PolicyVersion
	if json.Valid(v.Verdict) {
		d.Verdict = v.Verdict
	}
	return d, nil
}

// HistoryView is one history row.
type HistoryView struct {
	ID           int64           `json:"id"`
	At           time.Time       `json:"at"`
	Status       string          `json:"status"`
	PrevStatus   string          `json:"prev_status"`
	Transition   bool            `json:"transition"`
	Reason       string          `json:"reason,omitempty"`
	Replica      string          `json:"replica"`
	FromVersion  int64           `json:"from_state_version"`
	ToVersion    int64           `json:"to_state_version"`
	DurationSecs float64         `json:"duration_seconds"`
	Verdict      json.RawMessage `json:"verdict,omitempty"`
}

func history(ctx context.Context, svc *fleet.Service, name string, transitions bool, limit int) ([]HistoryView, error) {
	if _, err := svc.Store().Agent(ctx, name); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultHistory
	}
	rows, err := svc.Store().History(ctx, name, store.HistoryFilter{TransitionsOnly: transitions, Limit: min(limit, maxHistory)})
	if err != nil {
		return nil, err
	}
	out := make([]HistoryView, 0, len(rows))
	for _, h := range rows {
		prev := h.PrevStatus
		if prev == "" {
			prev = "none"
		}
		v := HistoryView{ID: h.ID, At: h.At.UTC(), Status: h.Status, PrevStatus: prev, Transition: h.Transition, Reason: h.Reason,
			Replica: h.Owner, FromVersion: h.FromVersion, ToVersion: h.ToVersion, DurationSecs: h.At.Sub(h.Started).Seconds()}
		if json.Valid(h.Verdict) {
			v.Verdict = h.Verdict
		}
		out = append(out, v)
	}
	return out, nil
}

// PolicyView is one policy version.
type PolicyView struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
	Body      string    `json:"body"`
}

func policyView(p *store.Policy) PolicyView {
	return PolicyView{Name: p.Name, Version: p.Version, SHA256: p.SHA256, CreatedAt: p.CreatedAt.UTC(), Body: string(p.Body)}
}
