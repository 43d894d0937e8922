package journal

import (
	"fmt"
	"os"
)

// ReadFile reads and checks one boot's log: strict decoding, a boot header
// first, and a replay of every record from the header's starting values.
// On error it returns the valid records before the failure with the error.
func ReadFile(path string) (*Log, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal/read: %w", err)
	}
	return Parse(path, b)
}
