// Package sdnotify speaks the two small protocols a service uses with its
// supervisor: readiness and watchdog notifications (sd_notify(3), a datagram
// on the unix socket named by $NOTIFY_SOCKET) and socket activation
// (sd_listen_fds(3): descriptors from 3 on, counted by $LISTEN_FDS, meant for
// the process $LISTEN_PID names, labelled by $LISTEN_FDNAMES).
//
// It uses the standard library only. Nothing here is a security boundary:
// the notification socket and the inherited descriptors are what the
// service manager hands to the process, which trusts its own environment.
// Both protocols are no-ops when the variables are absent, so a daemon that
// uses this package runs the same without systemd.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notification states (sd_notify(3)).
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Env reads the environment; os.Getenv in production, a map in tests.
type Env func(key string) string

// Notifier sends notifications to the service manager. The zero value (no
// socket) sends nothing.
type Notifier struct {
	addr *net.UnixAddr // nil: not supervised
}

// NewNotifier returns the notifier of the socket $NOTIFY_SOCKET names: an
// absolute path, or an abstract socket written with a leading '@'. Without
// the variable the notifier does nothing. Any other value is an error.
func NewNotifier(env Env) (*Notifier, error) {
	name := env("NOTIFY_SOCKET")
	switch {
	case name == "":
		return &Notifier{}, nil
	case name[0] == '/', name[0] == '@' && len(name) > 1:
		// The net package maps a leading '@' to the abstract namespace
		// (unix(7)).
		return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}, nil
	}
	return nil, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q: want an absolute path or @abstract name", name)
}

// Enabled reports whether there is a service manager to notify.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends one notification: one or more newline-separated
// VARIABLE=value assignments, such as Ready or "STATUS=serving". It does
// nothing without a socket.
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %s: %w", firstLine(state), err)
	}
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// WatchdogInterval returns how often the service must send Watchdog: half
// of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises. It returns 0 when
// no watchdog is set, or when $WATCHDOG_PID names another process.
func WatchdogInterval(env Env) (time.Duration, error) {
	usec := env("WATCHDOG_USEC")
	if usec == "" {
		return 0, nil
	}
	if p := env("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("sdnotify: WATCHDOG_PID %q: not a process id", p)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	n, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC %q: want a positive number of microseconds", usec)
	}
	return time.Duration(n) * time.Microsecond / 2, nil
}

// listenFDsStart is the first inherited descriptor (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// maxListenFDs bounds $LISTEN_FDS: a service gets a handful of sockets.
const maxListenFDs = 64

// ErrNotSocket is returned for an inherited descriptor that is not a
// listening stream socket.
var ErrNotSocket = errors.New("inherited descriptor is not a listening stream socket")

// Listeners returns the listening sockets the service manager passed to
// this process, by name ($LISTEN_FDNAMES; a descriptor without a name is
// "unknown", as sd_listen_fds_with_names(3) says). It returns nil without
// socket activation, or when $LISTEN_PID names another process (the
// variables were inherited from a parent). The descriptors are made
// close-on-exec; the caller owns the listeners. unset, when not nil, is
// called to remove the variables so that children do not see them.
func Listeners(env Env, unset func(key string) error) (map[string][]net.Listener, error) {
	pidStr, nStr := env("LISTEN_PID"), env("LISTEN_FDS")
	if pidStr == "" || nStr == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return nil, fmt.Errorf("sdnotify: LISTEN_PID %q: not a process id", pidStr)
	}
	if pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 0 || n > maxListenFDs {
		return nil, fmt.Errorf("sdnotify: LISTEN_FDS %q: want 0 to %d", nStr, maxListenFDs)
	}
	var names []string
	if s := env("LISTEN_FDNAMES"); s != "" {
		names = strings.Split(s, ":")
		if len(names) != n {
			return nil, fmt.Errorf("sdnotify: LISTEN_FDNAMES has %d names for %d descriptors", len(names), n)
		}
	}
	if unset != nil {
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			if err := unset(k); err != nil {
				return nil, fmt.Errorf("sdnotify: unset %s: %w", k, err)
			}
		}
	}
	out := map[string][]net.Listener{}
	var errs []error
	for i := range n {
		name := "unknown"
		if names != nil && names[i] != "" {
			name = names[i]
		}
		ln, err := fileListener(listenFDsStart+i, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("sdnotify: descriptor %d (%s): %w", listenFDsStart+i, name, err))
			continue
		}
		out[name] = append(out[name], ln)
	}
	if err := errors.Join(errs...); err != nil {
		for _, lns := range out {
			for _, ln := range lns {
				ln.Close()
			}
		}
		return nil, err
	}
	return out, nil
}

// fileListener wraps an inherited descriptor. net.FileListener duplicates
// it (close-on-exec), so the original is closed here.
func fileListener(fd int, name string) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), name)
	if f == nil {
		return nil, ErrNotSocket
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSocket, err)
	}
	return ln, nil
}
