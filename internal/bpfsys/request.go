package bpfsys

import "fmt"

// ExclHashSize is the only excl_prog_hash size the kernel accepts: a SHA-256.
const ExclHashSize = 32

// LoadRequest is one light skeleton to run: what libbpf's
// bpf_load_and_run_opts carries.
type LoadRequest struct {
	// Insns are the loader's instructions (opts_insn), 8 bytes each; for a
	// signed skeleton exactly the bytes the signature covers.
	Insns []byte
	// Data is the loader's data blob (opts_data), the value of the one
	// element of the data map.
	Data []byte
	// Signature is the detached CMS signature over Insns (opts_sig). Empty
	// means load without a signature: signature, signature_size and
	// keyring_id are then sent as zero.
	Signature []byte
	// ExclHash is excl_prog_hash for the data map (opts_excl_hash): only the
	// program whose SHA-256 digest equals it may use the map. Empty for
	// unsigned skeletons; otherwise exactly ExclHashSize bytes.
	ExclHash []byte
	// KeyringID is bpf_attr.keyring_id, sent only with a Signature.
	KeyringID int32
	// Ctx is the run-time context handed to BPF_PROG_TEST_RUN: the
	// bpf_loader_ctx followed by the map and program descriptors, as long as
	// the skeleton's ctx.sz (see NewCtx). Run copies it; the caller's slice
	// is not modified.
	Ctx []byte
	// LogBuf asks for the verifier log of the loader's BPF_PROG_LOAD, at
	// LogLevel (1 when zero). Without LogBuf, LogLevel is ignored.
	LogLevel uint32
	LogBuf   bool
}

// LoadResult is what Run learnt. On error Run still returns it, with the fds
// closed and nil, and Step naming the step that failed.
type LoadResult struct {
	// MapFD and LoaderFD are the data map and the loader program; the
	// caller closes them. libbpf closes both right after the run.
	MapFD, LoaderFD *FD
	// MapHash is the kernel's SHA-256 of the frozen data map
	// (bpf_map_info.hash), equal to SHA-256(Data).
	MapHash [32]byte
	// MapID and LoaderID are the kernel's object ids.
	MapID, LoaderID uint32
	// LoaderTag is bpf_prog_info.tag: on 6.18 the first 8 bytes of the
	// SHA-256 of the loader's instructions.
	LoaderTag [8]byte
	// Retval is the loader's return value: 0 when it created everything,
	// a negative errno from its own checks otherwise.
	Retval int32
	// CtxOut is the context after the run, holding the fds the loader wrote
	// (see ReadCtxFDs). Those fds belong to the caller.
	CtxOut []byte
	// VerifierLog is the loader's verifier log when LogBuf was set.
	VerifierLog string
	// Step is the step that failed, NoStep on success.
	Step Step
}

func (r *LoadRequest) validate() error {
	switch {
	case len(r.Insns) == 0 || len(r.Insns)%8 != 0:
		return fmt.Errorf("%w: insns length %d is not a positive multiple of 8", ErrInvalidRequest, len(r.Insns))
	case len(r.Insns)/8 > 1<<24:
		return fmt.Errorf("%w: %d instructions", ErrInvalidRequest, len(r.Insns)/8)
	case len(r.Data) == 0:
		return fmt.Errorf("%w: empty data blob", ErrInvalidRequest)
	case uint64(len(r.Data)) > 1<<31:
		return fmt.Errorf("%w: data blob of %d bytes", ErrInvalidRequest, len(r.Data))
	case len(r.ExclHash) != 0 && len(r.ExclHash) != ExclHashSize:
		return fmt.Errorf("%w: excl hash length %d, want %d", ErrInvalidRequest, len(r.ExclHash), ExclHashSize)
	case uint64(len(r.Signature)) > 1<<31:
		return fmt.Errorf("%w: signature of %d bytes", ErrInvalidRequest, len(r.Signature))
	case len(r.Ctx) > 1<<16-1:
		return fmt.Errorf("%w: context of %d bytes (the kernel takes at most 65535)", ErrInvalidRequest, len(r.Ctx))
	}
	return nil
}
