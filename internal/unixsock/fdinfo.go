package unixsock

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// ErrExited: a pidfd's process has exited (fdinfo says Pid -1 once it is
// reaped, 0 when it lives in a pid namespace this process cannot see).
var ErrExited = errors.New("process exited or not visible")

// parseFdinfoPID reads the "Pid:" line of a pidfd's /proc/self/fdinfo
// entry (proc(5), kernel/pid.c pidfd_show_fdinfo): the pid in the reader's
// pid namespace.
func parseFdinfoPID(b []byte) (uint32, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("Pid:"))
		if !ok {
			continue
		}
		rest = bytes.TrimSpace(rest)
		v, err := strconv.ParseInt(string(rest), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("pidfd fdinfo: Pid %q: %w", rest, err)
		}
		if v <= 0 {
			return 0, fmt.Errorf("pidfd fdinfo: Pid %d: %w", v, ErrExited)
		}
		return uint32(v), nil
	}
	return 0, errors.New("pidfd fdinfo: no Pid line")
}
