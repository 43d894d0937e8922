//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package journal

import (
	"errors"
	"fmt"
	"os"
)

// lockDir is not implemented where flock is not available.
func lockDir(path string) (*os.File, error) {
	return nil, fmt.Errorf("lock: flock: %w", errors.ErrUnsupported)
}
