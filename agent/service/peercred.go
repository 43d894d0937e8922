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

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

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
	uid, gid, pid, err := socketPeer(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("peercred/handshake: %w", err)
	}
	p := PeerCred{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            uid, GID: gid, PID: pid,
	}
	p.Allowed = c.allowed(uid, gid, pid)
	if !p.Allowed {
		c.logger.Warn("local peer refused", "uid", uid, "gid", gid, "pid", pid)
		return conn, p, nil
	}
	p.Exe, p.ExeSHA256 = exeOf(pid)
	return conn, p, nil
}

// allowed decides whether a peer is served: uid 0, or the served group as
// its gid or one of its supplementary groups.
func (c *peerCredentials) allowed(uid, gid, pid uint32) bool {
	if uid == 0 {
		return true
	}
	if c.group < 0 {
		return false
	}
	if gid == uint32(c.group) {
		return true
	}
	groups, err := procGroups(pid)
	if err != nil {
		c.logger.Debug("supplementary groups unreadable", "pid", pid, "err", err)
		return false
	}
	return slices.Contains(groups, uint32(c.group))
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

// procGroups reads the supplementary groups of pid from /proc/PID/status.
func procGroups(pid uint32) ([]uint32, error) {
	f, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The Groups line comes early; 64 KiB holds any real status file's
	// head and bounds what a parser ever reads.
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, err
	}
	return parseStatusGroups(b)
}

// exeOf names and hashes the executable of pid. Either is empty when it
// cannot be read.
func exeOf(pid uint32) (string, []byte) {
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
