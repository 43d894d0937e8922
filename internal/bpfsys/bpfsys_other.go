//go:build !linux || !(amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le)

package bpfsys

import (
	"context"
	"errors"
	"fmt"
)

// Run returns errors.ErrUnsupported: the platform has no bpf(2).
func Run(ctx context.Context, req LoadRequest, hook func(Step) error) (*LoadResult, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	return &LoadResult{Step: MapCreate}, fmt.Errorf("bpfsys/run: %w", errors.ErrUnsupported)
}

// ProbeSignedLoad returns errors.ErrUnsupported: the platform has no bpf(2).
func ProbeSignedLoad(ctx context.Context) (SignatureSupport, error) {
	return SignaturesUnknown, fmt.Errorf("bpfsys/probe: %w", errors.ErrUnsupported)
}

// ProgramIDs returns errors.ErrUnsupported: the platform has no bpf(2).
func ProgramIDs() ([]uint32, error) {
	return nil, fmt.Errorf("bpfsys/program ids: %w", errors.ErrUnsupported)
}

// ProgramInfoByID returns errors.ErrUnsupported: the platform has no bpf(2).
func ProgramInfoByID(id uint32) (*ProgInfo, error) {
	return nil, fmt.Errorf("bpfsys/program info: %w", errors.ErrUnsupported)
}

// ProgramInfoByFD returns errors.ErrUnsupported: the platform has no bpf(2).
func ProgramInfoByFD(fd int) (*ProgInfo, error) {
	return nil, fmt.Errorf("bpfsys/program info: %w", errors.ErrUnsupported)
}

// Close returns errors.ErrUnsupported for an open FD; no FD is ever opened here.
func (fd *FD) Close() error {
	if fd == nil || fd.raw < 0 {
		return nil
	}
	return fmt.Errorf("bpfsys/close: %w", errors.ErrUnsupported)
}

// BootTimeNS returns 0: the platform's boot clock is not read here.
func BootTimeNS() uint64 { return 0 }

// PinDir is a directory pins are made in; none can be opened here.
type PinDir struct{}

// OpenPinDir returns errors.ErrUnsupported: the platform has no bpf filesystem.
func OpenPinDir(path string) (*PinDir, error) {
	return nil, fmt.Errorf("bpfsys/pin dir %s: %w", path, errors.ErrUnsupported)
}

// Path returns "".
func (d *PinDir) Path() string { return "" }

// Owner returns 0.
func (d *PinDir) Owner() uint32 { return 0 }

// Pin returns errors.ErrUnsupported.
func (d *PinDir) Pin(fd int, name string) (string, error) {
	return "", fmt.Errorf("bpfsys/pin %s: %w", name, errors.ErrUnsupported)
}

// Remove returns errors.ErrUnsupported.
func (d *PinDir) Remove(name string) error {
	return fmt.Errorf("bpfsys/unpin %s: %w", name, errors.ErrUnsupported)
}

// Close does nothing.
func (d *PinDir) Close() error { return nil }
