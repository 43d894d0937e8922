//go:build !cgo

package tpm_test

import (
	"errors"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// TestSimulatorNeedsCgo proves a build without cgo refuses the simulator
// with errors.ErrUnsupported instead of failing later.
func TestSimulatorNeedsCgo(t *testing.T) {
	if _, err := tpm.Open(t.Context(), "sim"); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Open(sim) without cgo = %v, want errors.ErrUnsupported", err)
	}
}
