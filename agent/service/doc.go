// Package service puts the agent on the wire: the gRPC servers of
// proto/bpfattest/v1 (LocalService on a unix socket, AttestationService over
// TLS whose files are reloaded when they change, TLSReloader), the
// peer-credential check of the local socket, the budgets each peer may
// hold or ask (admit.go), the metrics endpoint (prometheus/client_golang, one registry per
// Server, per-RPC counts and latencies from an interceptor) with /healthz
// and /readyz, and the one function that turns the agent's errors into gRPC
// status codes (grpcError).
//
// Trust assumptions. Local peers are identified by the kernel, never by
// anything they send: SO_PEERCRED and SO_PEERGROUPS (socket(7), through
// internal/unixsock) give the uid, gid, pid and supplementary groups the
// process had when it connected, and only uid 0 or members of the
// configured group (as primary or supplementary group) are served; every
// other peer gets PermissionDenied before any handler runs. Nothing read
// from /proc decides who is served. The executable path and its SHA-256
// are read from /proc/PID/exe at the handshake and recorded in the
// measurement as who asked, and kept only if a pidfd taken from the socket
// (SO_PEERPIDFD) shows afterwards that the pid still names the process
// that connected; a peer that execs between connect and handshake can
// still make them describe another image, so they are evidence for an
// audit, not an authorization input.
//
// Remote peers are authenticated by TLS 1.3 only. With client
// authentication configured, a client certificate is required and accepted
// when it chains to the configured CA pool (any certificate the CA issued),
// when its leaf's SHA-256 fingerprint is on the allowlist, or, with both
// configured, only when both hold. The budgets are per peer: the client
// certificate's fingerprint under mutual TLS, the peer's IP address
// otherwise. Quotes have no rate per peer: the agent bounds the TPM time of
// all quotes together and coalesces every waiting request into them, so a
// verifier host whose verifiers share one address is served at the TPM's
// pace, within its budget of quote calls in flight.
//
// Nothing the service returns is trusted by a verifier: TPM structures and
// log records are passed through as the TPM and the log produced them.
package service
