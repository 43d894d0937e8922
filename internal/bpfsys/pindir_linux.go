//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotBPFFS: a pin directory is not on a bpf filesystem.
var ErrNotBPFFS = errors.New("not on a bpf filesystem")

// PinDir is an open directory on a bpf filesystem. Pins are made by name
// relative to its descriptor (BPF_OBJ_PIN with BPF_F_PATH_FD, Linux 6.5),
// so the directory that was checked when it was opened is the one pinned
// into, even if its path is renamed or replaced by a symbolic link
// meanwhile. Not safe for concurrent Close.
type PinDir struct {
	fd   int
	path string
	uid  uint32
}

// OpenPinDir opens path, which must be a directory on a bpf filesystem
// (ErrNotBPFFS otherwise), and records its owner.
func OpenPinDir(path string) (*PinDir, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bpfsys/pin dir %s: %w", path, err)
	}
	d := &PinDir{fd: fd, path: path}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return nil, errors.Join(fmt.Errorf("bpfsys/pin dir %s: statfs: %w", path, err), d.Close())
	}
	if uint32(fs.Type) != unix.BPF_FS_MAGIC {
		return nil, errors.Join(fmt.Errorf("bpfsys/pin dir %s: %w", path, ErrNotBPFFS), d.Close())
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, errors.Join(fmt.Errorf("bpfsys/pin dir %s: stat: %w", path, err), d.Close())
	}
	d.uid = st.Uid
	return d, nil
}

// Path returns the path the directory was opened by.
func (d *PinDir) Path() string { return d.path }

// Owner returns the uid that owned the directory when it was opened.
func (d *PinDir) Owner() uint32 { return d.uid }

// Pin pins the map or program behind fd as name in the directory and
// returns the pin's path. name must be one path element. The pin keeps
// the object alive after every descriptor is closed, until it is removed.
func (d *PinDir) Pin(fd int, name string) (string, error) {
	if err := checkPinName(name); err != nil {
		return "", err
	}
	if d.fd < 0 || fd < 0 {
		return "", fmt.Errorf("bpfsys/pin %s: closed descriptor", name)
	}
	cname, err := unix.ByteSliceFromString(name)
	if err != nil {
		return "", fmt.Errorf("bpfsys/pin %q: %w", name, err)
	}
	attr := objPinAttr{pathname: ptr(cname), bpfFD: uint32(fd), fileFlags: unix.BPF_F_PATH_FD, pathFD: int32(d.fd)}
	_, errno := bpf(CmdObjPin, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(cname)
	runtime.KeepAlive(d)
	path := filepath.Join(d.path, name)
	if errno != 0 {
		return "", fmt.Errorf("bpfsys/pin %s: %w", path, &SyscallError{Cmd: CmdObjPin, Errno: errno})
	}
	return path, nil
}

// Remove removes the pin name from the directory.
func (d *PinDir) Remove(name string) error {
	if err := checkPinName(name); err != nil {
		return err
	}
	if err := unix.Unlinkat(d.fd, name, 0); err != nil {
		return fmt.Errorf("bpfsys/unpin %s: %w", filepath.Join(d.path, name), err)
	}
	return nil
}

// Close closes the directory. Closing twice, or a nil PinDir, is not an
// error.
func (d *PinDir) Close() error {
	if d == nil || d.fd < 0 {
		return nil
	}
	fd := d.fd
	d.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("bpfsys/pin dir %s: close: %w", d.path, err)
	}
	return nil
}

func checkPinName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("bpfsys/pin: %q is not a single path element: %w", name, ErrInvalidRequest)
	}
	return nil
}
