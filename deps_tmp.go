//go:build tools

package tools

import (
	_ "github.com/cilium/ebpf"
	_ "github.com/google/go-attestation/attest"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/google/go-tpm/tpm2"
	_ "github.com/google/go-tpm-tools/simulator"
	_ "golang.org/x/sys/unix"
)
