package bpfsys_test

import (
	"context"
	"testing"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// BenchmarkRun measures one whole light-skeleton run of the signed counter
// fixture (without its signature): map create to test run, then closing
// every fd, as the agent does per load.
func BenchmarkRun(b *testing.B) {
	requireKernel(b)
	f := loadFixture(b, "counter", true)
	req := request(f, false)
	for b.Loop() {
		res, err := bpfsys.Run(context.Background(), req, nil)
		if err != nil {
			b.Fatal(err)
		}
		closeRun(b, f, res)
	}
}

// BenchmarkProgramIDs measures one walk over every loaded program id, with
// at least a loader and its program loaded.
func BenchmarkProgramIDs(b *testing.B) {
	requireKernel(b)
	f := loadFixture(b, "pair", false)
	res, err := bpfsys.Run(context.Background(), request(f, false), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer closeRun(b, f, res)
	for b.Loop() {
		if _, err := bpfsys.ProgramIDs(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProgramInfoByID measures the info of one program, with its map
// ids and the digest of its translated instructions.
func BenchmarkProgramInfoByID(b *testing.B) {
	requireKernel(b)
	f := loadFixture(b, "rocfg", false)
	res, err := bpfsys.Run(context.Background(), request(f, false), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer closeRun(b, f, res)
	for b.Loop() {
		if _, err := bpfsys.ProgramInfoByID(res.LoaderID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProbeSignedLoad measures the two probe loads.
func BenchmarkProbeSignedLoad(b *testing.B) {
	requireKernel(b)
	for b.Loop() {
		if _, err := bpfsys.ProbeSignedLoad(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
