package unixsock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxGroups is the kernel's NGROUPS_MAX: no peer has more supplementary
// groups.
const maxGroups = 65536

// Cred is a peer's credentials as the kernel captured them at connect(2).
type Cred struct {
	UID, GID uint32
	PID      uint32
	// Groups are the supplementary groups, in the reader's user
	// namespace.
	Groups []uint32
}

// PeerCred reads SO_PEERCRED and SO_PEERGROUPS of a connected unix socket.
func PeerCred(rc syscall.RawConn) (Cred, error) {
	var (
		c    Cred
		serr error
	)
	if err := rc.Control(func(fd uintptr) {
		u, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			serr = fmt.Errorf("getsockopt SO_PEERCRED: %w", err)
			return
		}
		c.UID, c.GID, c.PID = u.Uid, u.Gid, uint32(u.Pid)
		c.Groups, serr = peerGroups(int(fd))
	}); err != nil {
		return Cred{}, fmt.Errorf("unixsock/peer cred: %w", err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("unixsock/peer cred: %w", serr)
	}
	return c, nil
}

// peerGroups reads SO_PEERGROUPS, growing the buffer when the kernel says
// it is too small (ERANGE, with the size it needs).
func peerGroups(fd int) ([]uint32, error) {
	n := 32
	for {
		buf := make([]uint32, n)
		size := uint32(4 * n)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case e == unix.ERANGE && size > uint32(4*n) && size <= 4*maxGroups:
			n = int(size / 4)
			continue
		case e != 0:
			return nil, fmt.Errorf("getsockopt SO_PEERGROUPS: %w", e)
		case size%4 != 0 || size > uint32(4*n):
			return nil, fmt.Errorf("getsockopt SO_PEERGROUPS: %d bytes", size)
		}
		return buf[:size/4], nil
	}
}

// Process is a pidfd for a peer's process.
type Process struct {
	fd  int
	pid uint32
}

// PeerProcess returns a pidfd for the process that connected (SO_PEERPIDFD).
// It fails when that process has exited, and with errors.ErrUnsupported on
// kernels before 6.5.
func PeerProcess(rc syscall.RawConn) (*Process, error) {
	var (
		pfd  int
		serr error
	)
	if err := rc.Control(func(fd uintptr) {
		pfd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	}); err != nil {
		return nil, fmt.Errorf("unixsock/peer process: %w", err)
	}
	switch {
	case errors.Is(serr, unix.ENOPROTOOPT):
		return nil, fmt.Errorf("unixsock/peer process: SO_PEERPIDFD: %w", errors.ErrUnsupported)
	case serr != nil:
		return nil, fmt.Errorf("unixsock/peer process: getsockopt SO_PEERPIDFD: %w", serr)
	}
	unix.CloseOnExec(pfd)
	p := &Process{fd: pfd}
	pid, err := pidfdPID(pfd)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("unixsock/peer process: %w", err)
	}
	p.pid = pid
	return p, nil
}

// pidfdPID reads the pid a pidfd refers to from its fdinfo.
func pidfdPID(fd int) (uint32, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, err
	}
	return parseFdinfoPID(b)
}

// PID is the process's pid, in this process's pid namespace.
func (p *Process) PID() uint32 { return p.pid }

// Alive reports whether the process has not exited. A caller that read
// /proc/PID and then sees Alive true knows it read the process the pidfd
// names: a pid is only reused after its process has exited.
func (p *Process) Alive() bool {
	return unix.PidfdSendSignal(p.fd, 0, nil, 0) == nil
}

// Close releases the pidfd.
func (p *Process) Close() error {
	if p == nil || p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

// SetSocketMode sets the owner and mode of the socket file at path without
// following a symbolic link at its last component: it opens the name with
// O_PATH|O_NOFOLLOW, refuses anything but a socket, and changes that
// inode through the descriptor.
func SetSocketMode(path string, uid, gid int, mode os.FileMode) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("unixsock/set mode %s: open directory: %w", path, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("unixsock/set mode %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("unixsock/set mode %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("unixsock/set mode %s: %w", path, ErrNotSocket)
	}
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("unixsock/set mode %s: chown: %w", path, err)
	}
	perm := uint32(mode.Perm())
	if err := unix.Fchmodat(fd, "", perm, unix.AT_EMPTY_PATH); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("unixsock/set mode %s: chmod: %w", path, err)
		}
		// No fchmodat2 (before Linux 6.6): the descriptor's magic link
		// in /proc names the same inode, and chmod follows it only there.
		if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), perm); err != nil {
			return fmt.Errorf("unixsock/set mode %s: chmod: %w", path, err)
		}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("unixsock/set mode %s: %w", path, err)
	}
	if st.Uid != uint32(uid) || st.Gid != uint32(gid) || st.Mode&0o7777 != perm {
		return fmt.Errorf("unixsock/set mode %s: owner %d:%d mode %#o after setting %d:%d %#o", path, st.Uid, st.Gid, st.Mode&0o7777, uid, gid, perm)
	}
	return nil
}
