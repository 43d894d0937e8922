package fleet

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/verifier"
)

// AgentSpec registers one agent.
type AgentSpec struct {
	Name string `json:"name"`
	// Mode is "pull" (default) or "push".
	Mode string `json:"mode,omitempty"`
	// Address is a pull agent's remote API, host:port.
	Address string `json:"address,omitempty"`
	// ServerName is the name to verify in a pull agent's certificate.
	ServerName string `json:"server_name,omitempty"`
	// CertSHA256 pins a pull agent's server certificate, and names a
	// push agent by its client certificate (required for push): hex
	// SHA-256 of the certificate's DER.
	CertSHA256 string `json:"cert_sha256,omitempty"`
	// Policy names the agent's policy (default: the service's default).
	Policy string `json:"policy,omitempty"`
	// AKPublic pins the agent's AK (TPMT_PUBLIC); without it the service
	// pins the AK at first contact if run with TOFU.
	AKPublic []byte `json:"ak_public,omitempty"`
	// AKPinned says how AKPublic came to be pinned (verifier.PinEKCredential
	// with EKCertSHA256 for an enrolled agent, verifier.PinTOFU, or
	// verifier.PinAKFile, the default), as bpfattest enroll and scan state
	// files record it.
	AKPinned     string `json:"ak_pinned,omitempty"`
	EKCertSHA256 string `json:"ek_certificate_sha256,omitempty"`
	// State imports a verifier state (attest.State, MarshalBinary), as
	// bpfattest scan's state files hold.
	State []byte `json:"state,omitempty"`
}

// Limits of a registration.
const (
	MaxAgentsPerRequest = 100_000
	maxAddressLen       = 1024
	maxAKLen            = 4096
	MaxStateLen         = 64 << 20
	maxPolicyNameLen    = 128
	// MaxPolicySize bounds a policy body.
	MaxPolicySize = 1 << 20
)

// ErrInvalid is wrapped by every refused request.
var ErrInvalid = errors.New("invalid request")

var policyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidPolicyName reports whether name may name a policy.
func ValidPolicyName(name string) bool {
	return len(name) <= maxPolicyNameLen && policyName.MatchString(name)
}

// Validate checks a spec and fills its defaults.
func (a *AgentSpec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: agent %q: %s", ErrInvalid, a.Name, fmt.Sprintf(format, args...))
	}
	if !verifier.ValidHostName(a.Name) {
		return bad("name: letters, digits, '.', '_' and '-' only, at most 253")
	}
	if a.Mode == "" {
		a.Mode = store.ModePull
	}
	if a.Policy != "" && !ValidPolicyName(a.Policy) {
		return bad("policy name %q", a.Policy)
	}
	if a.CertSHA256 != "" {
		fp, err := hex.DecodeString(a.CertSHA256)
		if err != nil || len(fp) != 32 {
			return bad("cert_sha256: want 64 hex digits")
		}
		a.CertSHA256 = hex.EncodeToString(fp)
	}
	switch a.Mode {
	case store.ModePull:
		if len(a.Address) > maxAddressLen {
			return bad("address too long")
		}
		host, port, err := net.SplitHostPort(a.Address)
		if err != nil || host == "" {
			return bad("address %q: want host:port", a.Address)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return bad("address %q: port", a.Address)
		}
		if len(a.ServerName) > 253 {
			return bad("server_name too long")
		}
	case store.ModePush:
		if a.CertSHA256 == "" {
			return bad("a push agent needs cert_sha256, its client certificate's SHA-256")
		}
		if a.Address != "" || a.ServerName != "" {
			return bad("a push agent has no address or server_name")
		}
	default:
		return bad("mode %q: want pull or push", a.Mode)
	}
	if len(a.AKPublic) > maxAKLen {
		return bad("ak_public of %d bytes", len(a.AKPublic))
	}
	switch {
	case len(a.AKPublic) == 0 && (a.AKPinned != "" || a.EKCertSHA256 != ""):
		return bad("ak_pinned and ek_certificate_sha256 describe an ak_public")
	case len(a.AKPublic) == 0:
	case a.AKPinned == "":
		a.AKPinned = verifier.PinAKFile
	case a.AKPinned != verifier.PinAKFile && a.AKPinned != verifier.PinTOFU && a.AKPinned != verifier.PinEKCredential:
		return bad("ak_pinned %q: want %s, %s or %s", a.AKPinned, verifier.PinEKCredential, verifier.PinAKFile, verifier.PinTOFU)
	}
	if a.EKCertSHA256 != "" {
		if fp, err := hex.DecodeString(a.EKCertSHA256); err != nil || len(fp) != 32 {
			return bad("ek_certificate_sha256: want 64 hex digits")
		}
	}
	if len(a.State) > 0 {
		if len(a.AKPublic) == 0 {
			return bad("a state without the AK it was verified with")
		}
		if len(a.State) > MaxStateLen {
			return bad("state of %d bytes", len(a.State))
		}
		var st attest.State
		if err := st.UnmarshalBinary(a.State); err != nil {
			return bad("state: %v", err)
		}
	}
	return nil
}

// Register validates every spec, then registers or updates the agents in
// one transaction (all or none). A
// spec naming an existing agent updates its address, identity and policy;
// its pinned AK and state stay (another AK is refused: delete the agent
// first). New agents are first due at a random point of the next
// interval.
func (s *Service) Register(ctx context.Context, specs []AgentSpec) error {
	if len(specs) > MaxAgentsPerRequest {
		return fmt.Errorf("fleet/register: %w: %d agents, at most %d", ErrInvalid, len(specs), MaxAgentsPerRequest)
	}
	seen := map[string]bool{}
	for i := range specs {
		if err := specs[i].Validate(); err != nil {
			return fmt.Errorf("fleet/register: %w", err)
		}
		if seen[specs[i].Name] {
			return fmt.Errorf("fleet/register: %w: agent %q twice", ErrInvalid, specs[i].Name)
		}
		seen[specs[i].Name] = true
	}
	now := time.Now()
	regs := make([]store.Registration, 0, len(specs))
	for _, a := range specs {
		r := store.Registration{Name: a.Name, Mode: a.Mode, Address: a.Address, ServerName: a.ServerName, CertSHA256: a.CertSHA256,
			Policy: a.Policy, AKPublic: a.AKPublic, State: a.State, NextDue: s.firstDue(now), Now: now}
		if r.Policy == "" {
			r.Policy = s.cfg.DefaultPolicy
		}
		if len(a.AKPublic) > 0 {
			r.Pinned, r.EKCertSHA256 = a.AKPinned, a.EKCertSHA256
		}
		regs = append(regs, r)
	}
	if err := s.st.Register(ctx, regs...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("fleet/register: %w: %w", ErrInvalid, err)
		}
		return fmt.Errorf("fleet/register: %w", err)
	}
	for _, a := range specs {
		s.pool.drop(a.Name)
	}
	return nil
}

// Delete removes an agent and everything kept about it.
func (s *Service) Delete(ctx context.Context, name string) error {
	if err := s.st.Delete(ctx, name); err != nil {
		return fmt.Errorf("fleet/delete: %w", err)
	}
	s.pool.drop(name)
	s.keepState(name, 0, nil)
	return nil
}

// PutPolicy checks a policy (attest.ParsePolicy) and stores it as the
// next version of name, unless it equals the latest.
func (s *Service) PutPolicy(ctx context.Context, name string, body []byte) (int, error) {
	if !ValidPolicyName(name) {
		return 0, fmt.Errorf("fleet/policy: %w: name %q", ErrInvalid, name)
	}
	if len(body) > MaxPolicySize {
		return 0, fmt.Errorf("fleet/policy %s: %w: %d bytes, at most %d", name, ErrInvalid, len(body), MaxPolicySize)
	}
	if _, err := attest.ParsePolicy(body); err != nil {
		return 0, fmt.Errorf("fleet/policy %s: %w: %w", name, ErrInvalid, err)
	}
	v, err := s.st.PutPolicy(ctx, name, body, time.Now())
	if err != nil {
		return 0, fmt.Errorf("fleet/policy: %w", err)
	}
	return v, nil
}

// Store returns the service's store, for the read-only views of the API
// and the dashboard.
func (s *Service) Store() store.Store { return s.st }
