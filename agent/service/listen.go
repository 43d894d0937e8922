package service

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/bpfattest/bpfattest/internal/unixsock"
)

// ListenUnix creates the local socket at path: mode 0660, owner root,
// group gid (negative: root's group). A stale socket file at path is
// replaced; any other file there is an error. The parent directory is
// created (0755) if missing.
//
// Between the socket's creation and its chmod the file has the process
// umask's mode; a peer that connects in that window is still subject to
// the peer-credential check, which is the authorization that counts.
func ListenUnix(path string, gid int) (net.Listener, error) {
	return listenUnix(path, gid, nil)
}

// listenUnix is ListenUnix; afterBind, when set, runs between bind and
// the change of owner and mode (tests swap the file there).
func listenUnix(path string, gid int, afterBind func()) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("local socket/listen: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("local socket/listen: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("local socket/listen: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local socket/listen: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local socket/listen: %w", err)
	}
	if afterBind != nil {
		afterBind()
	}
	if gid < 0 {
		gid = 0
	}
	// Through a descriptor of the name itself (O_PATH|O_NOFOLLOW): if
	// the socket was swapped for a link, nothing is followed and the
	// listener is refused.
	if err := unixsock.SetSocketMode(path, 0, gid, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local socket/listen: %w", err)
	}
	return ln, nil
}

// ErrNotLoopback: a remote listener without TLS must be on a loopback
// address.
var ErrNotLoopback = errors.New("address is not loopback")

// CheckLoopback reports whether addr (host:port) is a loopback address:
// an IP in 127.0.0.0/8 or ::1, or the name "localhost".
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: %w", addr, ErrNotLoopback)
	}
	return nil
}
