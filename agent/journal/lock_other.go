//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package journal

import (
	"errors"
	"os"
)

// lockDir is not implemented where flock is not available.
func lockDir(path string) (*os.File, error) {
	return nil, errors.New("journal/lock: flock not supported on this system")
}
