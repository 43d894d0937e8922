// Package unixsock is the kernel interface of the agent's local unix
// socket: who the peer is, as the kernel recorded it when the peer called
// connect(2), and the socket file's owner and mode, set without following
// symbolic links.
//
// Peer credentials come from the socket, never from /proc alone: SO_PEERCRED
// gives the uid, gid and pid and SO_PEERGROUPS the supplementary groups, all
// captured at connect time (socket(7)), so a peer that changes its groups,
// or exits and leaves its pid to another process, cannot change what the
// agent authorizes. SO_PEERPIDFD (Linux 6.5) gives a pidfd for the peer's
// process: a caller that reads /proc/PID checks with Process.Alive
// afterwards that the pid still names the process that connected, since a
// pidfd never refers to a later process that reuses the number.
//
// SetSocketMode opens the socket file with O_PATH|O_NOFOLLOW relative to
// its directory, checks on that descriptor that it is a socket, and changes
// owner and mode through the descriptor: a name swapped for a symbolic link
// between bind(2) and the change is refused, and the link's target is
// never touched.
//
// It is one of the three packages that import golang.org/x/sys/unix and
// unsafe (with internal/bpfsys and internal/progevents). Elsewhere than
// Linux every function returns errors.ErrUnsupported.
package unixsock
