package store

import (
	"context"
	"errors"
	"time"
)

// Store is the fleet service's memory. Every method is safe for concurrent
// use by many goroutines and, for the engines that support it
// (PostgreSQL), by many service replicas sharing one database.
type Store interface {
	// Register adds agents or updates their registrations (mode, address,
	// TLS identity, policy), all in one transaction: all or none. An
	// agent's pinned AK is never replaced: a registration that pins
	// another AK than the stored one is ErrConflict (delete the agent
	// first). A new agent is due at its NextDue.
	Register(ctx context.Context, regs ...Registration) error
	// Delete removes an agent, its latest verdict and its history.
	Delete(ctx context.Context, name string) error
	// Agent returns one agent; ErrNotFound when it is not registered.
	Agent(ctx context.Context, name string) (*Agent, error)
	// AgentByIdentity returns the push agent whose TLS client certificate
	// has the SHA-256 fingerprint fp (lowercase hex); ErrNotFound if none.
	AgentByIdentity(ctx context.Context, fp string) (*Agent, error)
	// Agents lists agents with their latest verdicts, by name.
	Agents(ctx context.Context, f AgentFilter) ([]AgentView, error)

	// PutPolicy stores a policy body under name and returns its version:
	// a new one (latest + 1) when the body differs from the latest, else
	// the latest's.
	PutPolicy(ctx context.Context, name string, body []byte, now time.Time) (int, error)
	// Policy returns a policy version (0: the latest); ErrNotFound if none.
	Policy(ctx context.Context, name string, version int) (*Policy, error)
	// Policies lists the latest version of every policy.
	Policies(ctx context.Context) ([]Policy, error)

	// Claim leases up to req.Limit agents that are due and not leased to
	// req.Owner until req.Now + req.Lease, and returns them. No two
	// callers are handed the same agent while its lease runs.
	Claim(ctx context.Context, req ClaimRequest) ([]*Agent, error)
	// ClaimAgent leases one push agent to owner for a challenge (nonce and
	// from_record in challenge) unless another lease on it runs; it is
	// ErrBusy then, ErrNotFound for no such push agent.
	ClaimAgent(ctx context.Context, name, owner string, challenge []byte, now time.Time, lease time.Duration) (*Agent, error)
	// Complete records one verification made under owner's lease from
	// state version o.FromVersion, in one transaction: the agent's new
	// state (compare-and-swap on the version: the state advances once per
	// version, never twice), pins, next due time and failures, its latest
	// verdict, a history row, and an outbox row per webhook when the
	// status changed and o.Alert says so; the lease is released. A lease
	// lost to another owner or a version that moved on is ErrLeaseLost:
	// nothing is written.
	Complete(ctx context.Context, o *Outcome) error
	// Release gives up owner's leases (a replica shutting down).
	Release(ctx context.Context, owner string) error

	// Verdict returns an agent's latest verdict; ErrNotFound before its
	// first verification.
	Verdict(ctx context.Context, name string) (*Verdict, error)
	// History returns an agent's history rows, newest first.
	History(ctx context.Context, name string, f HistoryFilter) ([]HistoryRow, error)
	// Summary counts the fleet by status, and reports the most overdue
	// agent's due time and the webhook backlog.
	Summary(ctx context.Context, now time.Time) (*Summary, error)

	// ClaimDeliveries leases up to limit webhook deliveries that are due.
	ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// Delivered marks a delivery done; Retry schedules its next attempt
	// at next (or gives up on it when next is zero).
	Delivered(ctx context.Context, id int64, owner string, now time.Time) error
	Retry(ctx context.Context, id int64, owner string, next time.Time, lastErr string) error

	// Prune deletes history rows that are not transitions made before
	// rounds, transitions made before transitions, and deliveries
	// finished before transitions. It returns the rows deleted.
	Prune(ctx context.Context, rounds, transitions time.Time) (int64, error)

	Close() error
}

// Errors of every engine.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("conflict")
	ErrLeaseLost = errors.New("lease lost")
	ErrBusy      = errors.New("busy")
)

// Agent modes.
const (
	// ModePull: the service dials the agent's remote API.
	ModePull = "pull"
	// ModePush: the agent (or its push sidecar) dials the service.
	ModePush = "push"
)

// Registration is what an operator says about an agent.
type Registration struct {
	Name string
	Mode string
	// Address is the agent's remote API (host:port), pull mode only.
	Address string
	// ServerName is the name to verify in a pull agent's TLS certificate
	// ("" for the host of Address).
	ServerName string
	// CertSHA256 is the TLS identity, hex SHA-256 of a certificate's DER:
	// a pull agent's server certificate (a pin on top of the CA check;
	// "" for none) or a push agent's client certificate (required).
	CertSHA256 string
	// Policy names the policy the agent is judged by.
	Policy string
	// AKPublic pins the agent's attestation key (TPMT_PUBLIC) with how it
	// was pinned; nil leaves it to the first verification (trust on first
	// use, or enrolment).
	AKPublic     []byte
	Pinned       string
	EKCertSHA256 string
	// State imports a verifier state (attest.State bytes), for an agent
	// moved from `bpfattest scan`'s state files; nil for none.
	State []byte
	// NextDue is when a new agent is first due.
	NextDue time.Time
	Now     time.Time
}

// Agent is an agent's registration and its verification state.
type Agent struct {
	Name, Mode, Address, ServerName, CertSHA256, Policy string
	// AKPublic, Pinned and EKCertSHA256: the pinned AK (nil before).
	AKPublic     []byte
	Pinned       string
	EKCertSHA256 string
	// State is the last verification's attest.State (MarshalBinary);
	// StateVersion counts its changes.
	State        []byte
	StateVersion int64
	NextDue      time.Time
	Failures     int
	// Status is the latest verdict's status ("" before the first).
	Status    string
	CreatedAt time.Time
	UpdatedAt time.Time
	// LeaseOwner and LeaseUntil describe the running lease, if any;
	// Challenge is a push session's nonce and record (see ClaimAgent).
	LeaseOwner string
	LeaseUntil time.Time
	Challenge  []byte
}

// AgentFilter selects agents in Agents.
type AgentFilter struct {
	// Status, when set, keeps agents whose latest verdict has it
	// ("none" for never verified).
	Status string
	// After continues a listing after this name; Limit bounds it
	// (0: no limit).
	After string
	Limit int
}

// AgentView is a row of the fleet listing.
type AgentView struct {
	Name, Mode, Address, Policy string
	Status, Reason              string
	VerifiedAt, NextDue         time.Time
	Failures                    int
}

// Policy is one version of a named policy.
type Policy struct {
	Name      string
	Version   int
	Body      []byte
	SHA256    string
	CreatedAt time.Time
}

// ClaimRequest asks for due agents.
type ClaimRequest struct {
	Owner string
	Now   time.Time
	Lease time.Duration
	Limit int
	// PushGrace: a push agent is claimed (to be judged unreachable) only
	// when it is this late.
	PushGrace time.Duration
}

// Outcome is one verification's result, for Complete.
type Outcome struct {
	Agent string
	Owner string
	// FromVersion is the state version the verification read.
	FromVersion int64
	// State is the new attest.State, nil when the verification did not
	// produce one (the stored state stays).
	State []byte
	// AKPublic, Pinned and EKCertSHA256 are set when this verification
	// pinned the AK (trust on first use, enrolment).
	AKPublic     []byte
	Pinned       string
	EKCertSHA256 string
	// Status, Reason and Verdict (JSON) are the verdict.
	Status, Reason string
	Verdict        []byte
	PolicyVersion  int
	Started, At    time.Time
	NextDue        time.Time
	Failures       int
	// Webhooks are the URLs told of an alerting transition: Alert(prev,
	// next) decides, prev being "" for a first verdict.
	Webhooks []string
	Alert    func(prev, next string) bool
}

// Verdict is an agent's latest verdict.
type Verdict struct {
	Agent         string
	Status        string
	Reason        string
	Verdict       []byte // JSON
	PolicyVersion int
	StateVersion  int64
	At            time.Time
	// Since is when the agent entered this status.
	Since time.Time
}

// HistoryFilter selects history rows.
type HistoryFilter struct {
	// TransitionsOnly keeps the rows where the status changed.
	TransitionsOnly bool
	Limit           int
}

// HistoryRow is one verification of an agent.
type HistoryRow struct {
	ID                 int64
	Agent              string
	Owner              string
	Started, At        time.Time
	Status, PrevStatus string
	Transition         bool
	// FromVersion and ToVersion are the state versions before and after
	// (equal when the verification did not advance the state).
	FromVersion, ToVersion int64
	Reason                 string
	// Verdict (JSON) is kept for transitions only.
	Verdict []byte
}

// Summary counts the fleet.
type Summary struct {
	Agents   int
	ByStatus map[string]int // "none" for never verified
	// OldestDue is the earliest next-due time of any agent (zero with no
	// agents): how late the most overdue agent is, when in the past.
	OldestDue time.Time
	// Due counts the agents due now.
	Due int
	// WebhookBacklog counts deliveries not yet made (nor given up).
	WebhookBacklog int
	WebhookFailed  int
}

// Delivery is one webhook delivery of a transition.
type Delivery struct {
	ID       int64
	URL      string
	Attempts int
	Created  time.Time
	// Event is the transition's history row (with its verdict).
	Event HistoryRow
}
