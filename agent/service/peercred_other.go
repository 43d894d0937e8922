//go:build !linux

package service

import (
	"errors"
	"fmt"
	"net"
)

func socketPeer(conn net.Conn) (uid, gid, pid uint32, err error) {
	return 0, 0, 0, fmt.Errorf("peer credentials: %w", errors.ErrUnsupported)
}
