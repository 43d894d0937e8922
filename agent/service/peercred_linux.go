package service

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// socketPeer reads SO_PEERCRED of a unix socket connection (socket(7)).
func socketPeer(conn net.Conn) (uid, gid, pid uint32, err error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, 0, 0, fmt.Errorf("peer credentials of %T: %w", conn, errors.ErrUnsupported)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, 0, err
	}
	if serr != nil {
		return 0, 0, 0, fmt.Errorf("getsockopt SO_PEERCRED: %w", serr)
	}
	return cred.Uid, cred.Gid, uint32(cred.Pid), nil
}
