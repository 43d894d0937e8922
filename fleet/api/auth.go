package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Role is what a client may do.
type Role int

// Roles, each including the one before.
const (
	RoleNone Role = iota
	RoleReader
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleReader:
		return "reader"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads "none", "reader" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "none":
		return RoleNone, nil
	case "reader":
		return RoleReader, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q: want none, reader or admin", s)
}

// Default organizational units that grant a role.
const (
	DefaultAdminOU  = "bpfattest-admin"
	DefaultReaderOU = "bpfattest-reader"
)

// Roles maps a client certificate to a role: a certificate whose SHA-256
// is listed in Admins or Readers has that role; otherwise a certificate
// that chains to the API's client CA has the role its subject's
// organizational unit names (AdminOU, ReaderOU; the CA is trusted to
// issue those OUs only to the right people). Anything else has none.
// Loopback is the role of a client that presents no certificate on a
// listener served without TLS (loopback addresses only).
type Roles struct {
	AdminOU, ReaderOU string
	Admins, Readers   []string
	Loopback          Role
}

// Of returns the role of a TLS client (nil: a connection without TLS).
func (r *Roles) Of(cs *tls.ConnectionState) Role {
	if cs == nil {
		return r.Loopback
	}
	if len(cs.PeerCertificates) == 0 {
		return RoleNone
	}
	leaf := cs.PeerCertificates[0]
	fp := Fingerprint(leaf.Raw)
	switch {
	case slices.Contains(r.Admins, fp):
		return RoleAdmin
	case slices.Contains(r.Readers, fp):
		return RoleReader
	case len(cs.VerifiedChains) == 0:
		return RoleNone
	}
	adminOU, readerOU := r.AdminOU, r.ReaderOU
	if adminOU == "" {
		adminOU = DefaultAdminOU
	}
	if readerOU == "" {
		readerOU = DefaultReaderOU
	}
	switch ou := leaf.Subject.OrganizationalUnit; {
	case slices.Contains(ou, adminOU):
		return RoleAdmin
	case slices.Contains(ou, readerOU):
		return RoleReader
	}
	return RoleNone
}

// Fingerprint is a certificate's SHA-256 in lowercase hex.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// NormalizeFingerprint accepts 64 hex digits, in pairs separated by
// colons or not, optionally prefixed "sha256:", and returns lowercase hex.
func NormalizeFingerprint(s string) (string, error) {
	h := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:"), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q: want 64 hex digits", s)
	}
	return h, nil
}

// tlsState returns the connection state of a gRPC peer (nil without TLS).
func tlsState(ctx context.Context) *tls.ConnectionState {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		return &ti.State
	}
	return nil
}

// methodRoles is the role each FleetService method needs.
var methodRoles = map[string]Role{
	"Summary": RoleReader, "ListAgents": RoleReader, "GetAgent": RoleReader, "History": RoleReader,
	"ListPolicies": RoleReader, "GetPolicy": RoleReader,
	"Register": RoleAdmin, "DeleteAgent": RoleAdmin, "PutPolicy": RoleAdmin,
}

// authorize is the FleetService interceptor: it refuses a call the
// client's role does not allow (PERMISSION_DENIED) and a method it does
// not know.
func (r *Roles) authorize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	need, ok := methodRoles[method]
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "%s", info.FullMethod)
	}
	if got := r.Of(tlsState(ctx)); got < need {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs the %s role, the client has %s", method, need, got)
	}
	return handler(ctx, req)
}
