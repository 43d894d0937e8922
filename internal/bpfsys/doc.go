// Package bpfsys runs a light skeleton's loader through the raw bpf(2) system
// call, with the signed-load attributes that github.com/cilium/ebpf does not
// expose, and enumerates the programs the kernel holds.
//
// It is the only package of the module that imports golang.org/x/sys/unix
// and unsafe for bpf(). It takes plain bytes (loader instructions, data blob,
// signature, exclusive-program hash, keyring id) and knows nothing of how they
// were parsed or measured: callers measure first and call Run only once the
// measurement is recorded.
//
// # Trust assumptions
//
// Run hands the bytes to the kernel exactly as given. It does not verify
// signatures (the kernel does, when built with CONFIG_SYSTEM_DATA_VERIFICATION;
// ProbeSignedLoad tells whether it is) and does not check that ExclHash is the
// SHA-256 of Insns (the kernel does, and refuses the load with EACCES when it
// is not). The context bytes passed to the loader are not covered by any
// signature; the caller decides and measures what it passes. File descriptors
// that the loader writes into the context are owned by the caller.
//
// # Kernel facts relied on (Linux 6.18, include/uapi/linux/bpf.h)
//
// The run sequence mirrors libbpf's bpf_load_and_run() (tools/lib/bpf/
// skel_internal.h): BPF_MAP_CREATE of a one-entry ARRAY "__loader.map" whose
// value is the data blob, created with excl_prog_hash (attr offset 80, size at
// 88) when signed; BPF_MAP_UPDATE_ELEM; BPF_MAP_FREEZE; BPF_OBJ_GET_INFO_BY_FD
// with bpf_map_info.hash (offset 88, hash_size 32 at 96), which makes the kernel
// compute and cache the SHA-256 of the frozen value in map->sha, the value the
// signed loader compares with the digest embedded in its instructions;
// BPF_PROG_LOAD of a sleepable BPF_PROG_TYPE_SYSCALL program with fd_array =
// [map fd] (fd_array_cnt left 0: on 6.18 an exclusive map bound through
// fd_array_cnt is refused with EACCES) and, when signed, signature (offset 152),
// signature_size (160) and keyring_id (164) in a 168-byte attr; then
// BPF_PROG_TEST_RUN with the context, which the kernel copies back after the
// run (kernel/bpf/syscall.c, net/bpf/test_run.c bpf_prog_test_run_syscall).
//
// Keyring ids 0, 1 and 2 name the builtin, secondary and platform system
// keyrings; other values are key serials or special ids such as -3 (the
// session keyring). An id that resolves to nothing fails with EINVAL before
// any signature check. A kernel without CONFIG_SYSTEM_DATA_VERIFICATION fails
// every load that carries a signature with EOPNOTSUPP.
//
// The verifier gives up with EAGAIN when a signal is pending for the thread
// (Go's preemption signal, SIGURG, is one): Run keeps the thread's signals
// blocked during BPF_PROG_LOAD and during the loader's run, whose nested
// program loads it could not retry (bpfVerified), and still retries a
// program load that fails with EAGAIN a bounded number of times.
//
// All pointers handed to the kernel live in attr structs as unsafe.Pointer
// fields, so the garbage collector sees them, and every buffer is kept alive
// across the system call. The implementation needs a 64-bit Linux; elsewhere
// every entry point returns errors.ErrUnsupported.
package bpfsys
