package service

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/bpfattest/bpfattest/internal/unixsock"
	"github.com/bpfattest/bpfattest/measure"
)

// PeerCred is what the local socket knows about a peer: its kernel
// credentials at connect time, the executable it ran at the handshake, and
// whether it may use the service.
type PeerCred struct {
	credentials.CommonAuthInfo
	UID, GID, PID uint32
	// Exe and ExeSHA256 name and hash /proc/PID/exe; empty when it could
	// not be read (the peer exited).
	Exe       string
	ExeSHA256 []byte
	// Allowed is true for uid 0 and for members of the served group.
	Allowed bool
}

// AuthType implements credentials.AuthInfo.
func (PeerCred) AuthType() string { return "peercred" }

// Requester is the measurement's view of the peer.
func (p PeerCred) Requester() measure.Requester {
	return measure.Requester{UID: p.UID, GID: p.GID, PID: p.PID, Exe: p.Exe, ExeSHA256: p.ExeSHA256}
}

// peerCredentials are the server transport credentials of the local
// socket: no bytes are exchanged; the handshake reads SO_PEERCRED.
type peerCredentials struct {
	group  int // gid whose members are served; <0: root only
	logger *slog.Logger
}

func newPeerCredentials(group int, logger *slog.Logger) credentials.TransportCredentials {
	return &peerCredentials{group: group, logger: logger}
}

func (c *peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, nil, fmt.Errorf("peercred/handshake: peer credentials of %T: %w", conn, errors.ErrUnsupported)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("peercred/handshake: %w", err)
	}
	cred, err := unixsock.PeerCred(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("peercred/handshake: %w", err)
	}
	p := PeerCred{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            cred.UID, GID: cred.GID, PID: cred.PID,
	}
	p.Allowed = c.allowed(cred)
	if !p.Allowed {
		c.logger.Warn("local peer refused", "uid", cred.UID, "gid", cred.GID, "pid", cred.PID, "groups", cred.Groups)
		return conn, p, nil
	}
	p.Exe, p.ExeSHA256 = c.exeOf(rc, cred.PID)
	return conn, p, nil
}

// allowed decides whether a peer is served: uid 0, or the served group as
// its gid or one of its supplementary groups, all as the kernel recorded
// them when the peer connected.
func (c *peerCredentials) allowed(cred unixsock.Cred) bool {
	if cred.UID == 0 {
		return true
	}
	if c.group < 0 {
		return false
	}
	return cred.GID == uint32(c.group) || slices.Contains(cred.Groups, uint32(c.group))
}

// ClientHandshake is never used: this value only serves.
func (c *peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, fmt.Errorf("peercred/client handshake: %w", errors.ErrUnsupported)
}

func (c *peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (c *peerCredentials) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

func (c *peerCredentials) OverrideServerName(string) error { return nil }

// exeOf names and hashes the executable of the peer's process, read from
// /proc/PID/exe, and keeps them only if a pidfd taken from the socket
// before the read still names a live process with that pid afterwards: a
// pid is reused only after its process exits, so the read was of the
// process that connected (or of what it exec'd since, which is why the
// executable is evidence for an audit, not an authorization input). Both
// are empty when that cannot be shown.
func (c *peerCredentials) exeOf(rc syscall.RawConn, pid uint32) (string, []byte) {
	proc, err := unixsock.PeerProcess(rc)
	if err != nil {
		c.logger.Debug("peer process not identified; its executable is not recorded", "pid", pid, "err", err)
		return "", nil
	}
	defer proc.Close()
	if proc.PID() != pid {
		return "", nil
	}
	path, sum := readExe(pid)
	if !proc.Alive() {
		return "", nil
	}
	return path, sum
}

// readExe names and hashes /proc/PID/exe. Either is empty when it cannot
// be read.
func readExe(pid uint32) (string, []byte) {
	base := "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/exe"
	path, err := os.Readlink(base)
	if err != nil {
		return "", nil
	}
	f, err := os.Open(base)
	if err != nil {
		return path, nil
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return path, nil
	}
	return path, h.Sum(nil)
}

// peerCredOf returns the local peer of an RPC, and whether there is one.
func peerCredOf(ctx context.Context) (PeerCred, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return PeerCred{}, false
	}
	pc, ok := p.AuthInfo.(PeerCred)
	return pc, ok
}
