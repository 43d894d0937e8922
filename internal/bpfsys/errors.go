package bpfsys

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrInvalidRequest is wrapped by errors for requests that cannot be sent to
// the kernel at all (for example instructions that are not a whole number of
// 8-byte instructions). Nothing is created when it is returned.
var ErrInvalidRequest = errors.New("invalid request")

// SyscallError is a bpf(2) command that the kernel refused. It unwraps to the
// errno, so errors.Is(err, unix.EACCES) works; ENOENT also matches
// fs.ErrNotExist.
type SyscallError struct {
	Step  Step          // the Run step, or NoStep outside Run
	Cmd   Cmd           // the bpf(2) command
	Errno syscall.Errno // the kernel's answer
}

func (e *SyscallError) Error() string {
	if e.Step == NoStep {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Errno)
	}
	return fmt.Sprintf("%s: %s: %v", e.Step, e.Cmd, e.Errno)
}

// Unwrap returns the errno.
func (e *SyscallError) Unwrap() error { return e.Errno }

// LoaderError is a loader program that ran and returned a negative value: the
// negated errno of its own checks (-EINVAL when the kernel's hash of the data
// map differs from the digest embedded in a signed loader) or of a command it
// issued. It unwraps to that errno.
type LoaderError struct {
	Retval int32
}

func (e *LoaderError) Error() string {
	return fmt.Sprintf("%s: loader returned %d (%v)", TestRun, e.Retval, e.errno())
}

// Unwrap returns the errno the loader reported.
func (e *LoaderError) Unwrap() error { return e.errno() }

func (e *LoaderError) errno() syscall.Errno { return syscall.Errno(-int64(e.Retval)) }

// Cmd is a bpf(2) command number (enum bpf_cmd in include/uapi/linux/bpf.h).
type Cmd uint32

// The commands this package issues.
const (
	CmdMapCreate      Cmd = 0
	CmdMapUpdateElem  Cmd = 2
	CmdProgLoad       Cmd = 5
	CmdObjPin         Cmd = 6
	CmdProgTestRun    Cmd = 10
	CmdProgGetNextID  Cmd = 11
	CmdProgGetFDByID  Cmd = 13
	CmdObjGetInfoByFD Cmd = 15
	CmdMapFreeze      Cmd = 22
)

func (c Cmd) String() string {
	switch c {
	case CmdMapCreate:
		return "BPF_MAP_CREATE"
	case CmdMapUpdateElem:
		return "BPF_MAP_UPDATE_ELEM"
	case CmdProgLoad:
		return "BPF_PROG_LOAD"
	case CmdObjPin:
		return "BPF_OBJ_PIN"
	case CmdProgTestRun:
		return "BPF_PROG_TEST_RUN"
	case CmdProgGetNextID:
		return "BPF_PROG_GET_NEXT_ID"
	case CmdProgGetFDByID:
		return "BPF_PROG_GET_FD_BY_ID"
	case CmdObjGetInfoByFD:
		return "BPF_OBJ_GET_INFO_BY_FD"
	case CmdMapFreeze:
		return "BPF_MAP_FREEZE"
	}
	return fmt.Sprintf("bpf_cmd(%d)", uint32(c))
}
