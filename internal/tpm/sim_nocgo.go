//go:build !cgo

package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// openSimulator fails: the reference simulator is C code and needs cgo.
func openSimulator() (transport.TPMCloser, error) {
	return nil, fmt.Errorf("%w: the simulator needs a cgo build", errors.ErrUnsupported)
}
