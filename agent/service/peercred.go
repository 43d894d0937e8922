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
	"sync"
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
// socket: no bytes are exchanged; the handshake reads SO_PEERCRED, takes
// the connection's share of the local connection budget (conns, per uid),
// and names and hashes the peer's executable (exes caches the hashes).
type peerCredentials struct {
	group  int   // gid whose members are served; <0: root only
	conns  *pool // nil: no connection budget
	exes   *exeCache
	logger *slog.Logger
}

func newPeerCredentials(group int, conns *pool, logger *slog.Logger) credentials.TransportCredentials {
	return &peerCredentials{group: group, conns: conns, exes: newExeCache(exeCacheEntries), logger: logger}
}

// heldConn is a local connection holding its share of the connection
// budget until it is closed.
type heldConn struct {
	net.Conn
	g *grant
}

func (c *heldConn) Close() error {
	c.g.release() // safe to call more than once
	return c.Conn.Close()
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
	if c.conns != nil {
		// Every peer's connections count, served or not: a refused peer's
		// connection is closed only after its first call.
		g, err := c.conns.take(localPeerKey(cred.UID), 1)
		if err != nil {
			return nil, nil, fmt.Errorf("peercred/handshake: uid %d: %w", cred.UID, err)
		}
		conn = &heldConn{Conn: conn, g: g}
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
	path, sum := c.exes.read(pid)
	if !proc.Alive() {
		return "", nil
	}
	return path, sum
}

// exeCacheEntries bounds the executables whose hashes the local socket
// keeps.
const exeCacheEntries = 256

// exeCache keeps the SHA-256 of executables by file identity, so that a
// peer that connects again (or many peers running one program) does not
// cost a read of the whole executable each time. The identity is what
// fstat says of the opened file: device, inode, size, modification and
// change times. Any write to the file changes its change time, which
// nobody can set back, so a file with the same identity has the same
// bytes; a hash is kept only if the identity was the same before and
// after the read.
type exeCache struct {
	max   int
	mu    sync.Mutex
	sums  map[fileID][]byte // guarded by mu
	order []fileID          // guarded by mu; oldest first
}

// fileID is a file's identity for exeCache.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

func newExeCache(max int) *exeCache { return &exeCache{max: max, sums: map[fileID][]byte{}} }

// identify returns the identity of an open file.
func identify(f *os.File) (fileID, bool) {
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}

// read names and hashes /proc/PID/exe. Either is empty when it cannot be
// read.
func (c *exeCache) read(pid uint32) (string, []byte) {
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
	return path, c.hash(f)
}

// hash returns the SHA-256 of an open file from its start, from the cache
// when the file's identity is there; nil when it cannot be read.
func (c *exeCache) hash(f *os.File) []byte {
	id, known := identify(f)
	if known {
		c.mu.Lock()
		sum, ok := c.sums[id]
		c.mu.Unlock()
		if ok {
			return slices.Clone(sum)
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return nil
	}
	sum := h.Sum(nil)
	if after, ok := identify(f); known && ok && after == id {
		c.put(id, sum)
	}
	return sum
}

func (c *exeCache) put(id fileID, sum []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sums[id]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.sums, c.order[0])
		c.order = c.order[1:]
	}
	c.sums[id] = slices.Clone(sum)
	c.order = append(c.order, id)
}

// len is the number of hashes kept.
func (c *exeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sums)
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
