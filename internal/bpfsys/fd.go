package bpfsys

import "strconv"

// FD is a file descriptor of a bpf object (map or program) owned by the
// holder, who must Close it. An FD is not safe for concurrent Close.
type FD struct {
	raw int // -1 once closed
}

// Int returns the descriptor number, or -1 after Close.
func (fd *FD) Int() int {
	if fd == nil {
		return -1
	}
	return fd.raw
}

func (fd *FD) String() string { return "fd " + strconv.Itoa(fd.Int()) }
