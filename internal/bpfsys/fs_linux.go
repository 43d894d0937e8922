//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// IsBPFFS reports whether path lies on a bpf filesystem (statfs magic
// BPF_FS_MAGIC), the only place BPF_OBJ_PIN can create a pin.
func IsBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("bpfsys/statfs %s: %w", path, err)
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}
