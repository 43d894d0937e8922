//go:build !linux

package unixsock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Cred is a peer's credentials as the kernel captured them at connect(2).
type Cred struct {
	UID, GID uint32
	PID      uint32
	Groups   []uint32
}

// PeerCred returns errors.ErrUnsupported elsewhere than Linux.
func PeerCred(syscall.RawConn) (Cred, error) {
	return Cred{}, fmt.Errorf("unixsock/peer cred: %w", errors.ErrUnsupported)
}

// Process is a pidfd for a peer's process.
type Process struct{}

// PeerProcess returns errors.ErrUnsupported elsewhere than Linux.
func PeerProcess(syscall.RawConn) (*Process, error) {
	return nil, fmt.Errorf("unixsock/peer process: %w", errors.ErrUnsupported)
}

// PID is 0 elsewhere than Linux.
func (p *Process) PID() uint32 { return 0 }

// Alive is false elsewhere than Linux.
func (p *Process) Alive() bool { return false }

// Close does nothing elsewhere than Linux.
func (p *Process) Close() error { return nil }

// SetSocketMode returns errors.ErrUnsupported elsewhere than Linux.
func SetSocketMode(path string, uid, gid int, mode os.FileMode) error {
	return fmt.Errorf("unixsock/set mode %s: %w", path, errors.ErrUnsupported)
}
