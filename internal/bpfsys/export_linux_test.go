package bpfsys

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dup returns a new FD for the same object (close-on-exec).
func (fd *FD) Dup() (*FD, error) {
	if fd == nil || fd.raw < 0 {
		return nil, errors.New("bpfsys/dup: closed fd")
	}
	raw, err := unix.FcntlInt(uintptr(fd.raw), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bpfsys/dup %d: %w", fd.raw, err)
	}
	runtime.KeepAlive(fd)
	return newFD(raw), nil
}
