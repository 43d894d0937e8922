//go:build !linux || !(amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le)

package bpfsys

import (
	"context"
	"fmt"
)

// Run returns ErrNotSupported: the platform has no bpf(2).
func Run(ctx context.Context, req LoadRequest, hook func(Step) error) (*LoadResult, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	return &LoadResult{Step: MapCreate}, fmt.Errorf("bpfsys/run: %w", ErrNotSupported)
}

// ProbeSignedLoad returns ErrNotSupported: the platform has no bpf(2).
func ProbeSignedLoad(ctx context.Context) (SignatureSupport, error) {
	return SignaturesUnknown, fmt.Errorf("bpfsys/probe: %w", ErrNotSupported)
}

// ProgramIDs returns ErrNotSupported: the platform has no bpf(2).
func ProgramIDs() ([]uint32, error) {
	return nil, fmt.Errorf("bpfsys/program ids: %w", ErrNotSupported)
}

// ProgramInfoByID returns ErrNotSupported: the platform has no bpf(2).
func ProgramInfoByID(id uint32) (*ProgInfo, error) {
	return nil, fmt.Errorf("bpfsys/program info: %w", ErrNotSupported)
}

// ProgramInfoByFD returns ErrNotSupported: the platform has no bpf(2).
func ProgramInfoByFD(fd int) (*ProgInfo, error) {
	return nil, fmt.Errorf("bpfsys/program info: %w", ErrNotSupported)
}

// PinFD returns ErrNotSupported: the platform has no bpf(2).
func PinFD(fd *FD, path string) error {
	return fmt.Errorf("bpfsys/pin: %w", ErrNotSupported)
}

// Close returns ErrNotSupported for an open FD; no FD is ever opened here.
func (fd *FD) Close() error {
	if fd == nil || fd.raw < 0 {
		return nil
	}
	return fmt.Errorf("bpfsys/close: %w", ErrNotSupported)
}

// Dup returns ErrNotSupported: the platform has no bpf(2).
func (fd *FD) Dup() (*FD, error) {
	return nil, fmt.Errorf("bpfsys/dup: %w", ErrNotSupported)
}

// IsBPFFS returns ErrNotSupported: the platform has no bpf filesystem.
func IsBPFFS(path string) (bool, error) {
	return false, fmt.Errorf("bpfsys/statfs: %w", ErrNotSupported)
}

// BootTimeNS returns 0: the platform's boot clock is not read here.
func BootTimeNS() uint64 { return 0 }
