//go:build !unix

package service

import "io/fs"

// inode is 0 where the platform has no inode numbers; size and time still
// tell a changed file.
func inode(fs.FileInfo) uint64 { return 0 }
