//go:build unix

package service

import (
	"io/fs"
	"syscall"
)

// inode is a file's inode number, which changes when a file is replaced by
// rename (as cert-manager, kubelet and atomic writers do).
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
