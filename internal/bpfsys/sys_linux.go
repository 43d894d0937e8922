//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The attr structs below mirror views of union bpf_attr and the info structs
// of include/uapi/linux/bpf.h as this kernel's BTF lays them out (offsets in
// the comments, checked by TestAttrLayout). Kernel pointers (__aligned_u64)
// are unsafe.Pointer fields, 8 bytes on the 64-bit targets this file builds
// for, so the garbage collector keeps what they point at alive and in place.

// mapCreateAttr is the BPF_MAP_CREATE view (92 bytes used).
type mapCreateAttr struct {
	mapType               uint32         // 0
	keySize               uint32         // 4
	valueSize             uint32         // 8
	maxEntries            uint32         // 12
	mapFlags              uint32         // 16
	innerMapFD            uint32         // 20
	numaNode              uint32         // 24
	mapName               [16]byte       // 28
	mapIfindex            uint32         // 44
	btfFD                 uint32         // 48
	btfKeyTypeID          uint32         // 52
	btfValueTypeID        uint32         // 56
	btfVmlinuxValueTypeID uint32         // 60
	mapExtra              uint64         // 64
	valueTypeBTFObjFD     int32          // 72
	mapTokenFD            int32          // 76
	exclProgHash          unsafe.Pointer // 80
	exclProgHashSize      uint32         // 88
	_                     uint32
}

// mapElemAttr is the BPF_MAP_UPDATE_ELEM view (32 bytes).
type mapElemAttr struct {
	mapFD uint32         // 0
	_     uint32         //
	key   unsafe.Pointer // 8
	value unsafe.Pointer // 16
	flags uint64         // 24
}

// mapFDAttr is the BPF_MAP_FREEZE view (4 bytes).
type mapFDAttr struct {
	mapFD uint32 // 0
}

// infoAttr is the BPF_OBJ_GET_INFO_BY_FD view (16 bytes).
type infoAttr struct {
	bpfFD   uint32         // 0
	infoLen uint32         // 4
	info    unsafe.Pointer // 8
}

// mapInfo is struct bpf_map_info (104 bytes on 6.18).
type mapInfo struct {
	mapType               uint32         // 0
	id                    uint32         // 4
	keySize               uint32         // 8
	valueSize             uint32         // 12
	maxEntries            uint32         // 16
	mapFlags              uint32         // 20
	name                  [16]byte       // 24
	ifindex               uint32         // 40
	btfVmlinuxValueTypeID uint32         // 44
	netnsDev              uint64         // 48
	netnsIno              uint64         // 56
	btfID                 uint32         // 64
	btfKeyTypeID          uint32         // 68
	btfValueTypeID        uint32         // 72
	btfVmlinuxID          uint32         // 76
	mapExtra              uint64         // 80
	hash                  unsafe.Pointer // 88: in, 32-byte buffer
	hashSize              uint32         // 96: in, must be 32
	_                     uint32
}

// progLoadAttr is the BPF_PROG_LOAD view (168 bytes, up to keyring_id).
type progLoadAttr struct {
	progType           uint32         // 0
	insnCnt            uint32         // 4
	insns              unsafe.Pointer // 8
	license            unsafe.Pointer // 16
	logLevel           uint32         // 24
	logSize            uint32         // 28
	logBuf             unsafe.Pointer // 32
	kernVersion        uint32         // 40
	progFlags          uint32         // 44
	progName           [16]byte       // 48
	progIfindex        uint32         // 64
	expectedAttachType uint32         // 68
	progBTFFD          uint32         // 72
	funcInfoRecSize    uint32         // 76
	funcInfo           uint64         // 80
	funcInfoCnt        uint32         // 88
	lineInfoRecSize    uint32         // 92
	lineInfo           uint64         // 96
	lineInfoCnt        uint32         // 104
	attachBTFID        uint32         // 108
	attachProgFD       uint32         // 112
	coreReloCnt        uint32         // 116
	fdArray            unsafe.Pointer // 120
	coreRelos          uint64         // 128
	coreReloRecSize    uint32         // 136
	logTrueSize        uint32         // 140
	progTokenFD        int32          // 144
	fdArrayCnt         uint32         // 148
	signature          unsafe.Pointer // 152
	signatureSize      uint32         // 160
	keyringID          int32          // 164
}

// testRunAttr is the BPF_PROG_TEST_RUN view (80 bytes).
type testRunAttr struct {
	progFD      uint32         // 0
	retval      uint32         // 4
	dataSizeIn  uint32         // 8
	dataSizeOut uint32         // 12
	dataIn      unsafe.Pointer // 16
	dataOut     unsafe.Pointer // 24
	repeat      uint32         // 32
	duration    uint32         // 36
	ctxSizeIn   uint32         // 40
	ctxSizeOut  uint32         // 44
	ctxIn       unsafe.Pointer // 48
	ctxOut      unsafe.Pointer // 56
	flags       uint32         // 64
	cpu         uint32         // 68
	batchSize   uint32         // 72
	_           uint32
}

// idAttr is the *_GET_NEXT_ID / *_GET_FD_BY_ID view (12 bytes).
type idAttr struct {
	startID   uint32 // 0: start_id / prog_id
	nextID    uint32 // 4
	openFlags uint32 // 8
}

// objPinAttr is the BPF_OBJ_PIN view (20 bytes used).
type objPinAttr struct {
	pathname  unsafe.Pointer // 0
	bpfFD     uint32         // 8
	fileFlags uint32         // 12
	pathFD    int32          // 16
	_         uint32
}

// progInfo is struct bpf_prog_info (232 bytes on 6.18).
type progInfo struct {
	progType             uint32         // 0
	id                   uint32         // 4
	tag                  [8]byte        // 8
	jitedProgLen         uint32         // 16
	xlatedProgLen        uint32         // 20
	jitedProgInsns       unsafe.Pointer // 24
	xlatedProgInsns      unsafe.Pointer // 32
	loadTime             uint64         // 40
	createdByUID         uint32         // 48
	nrMapIDs             uint32         // 52
	mapIDs               unsafe.Pointer // 56
	name                 [16]byte       // 64
	ifindex              uint32         // 80
	bits                 uint32         // 84: gpl_compatible:1
	netnsDev             uint64         // 88
	netnsIno             uint64         // 96
	nrJitedKsyms         uint32         // 104
	nrJitedFuncLens      uint32         // 108
	jitedKsyms           uint64         // 112
	jitedFuncLens        uint64         // 120
	btfID                uint32         // 128
	funcInfoRecSize      uint32         // 132
	funcInfo             uint64         // 136
	nrFuncInfo           uint32         // 144
	nrLineInfo           uint32         // 148
	lineInfo             uint64         // 152
	jitedLineInfo        uint64         // 160
	nrJitedLineInfo      uint32         // 168
	lineInfoRecSize      uint32         // 172
	jitedLineInfoRecSize uint32         // 176
	nrProgTags           uint32         // 180
	progTags             uint64         // 184
	runTimeNs            uint64         // 192
	runCnt               uint64         // 200
	recursionMisses      uint64         // 208
	verifiedInsns        uint32         // 216
	attachBTFObjID       uint32         // 220
	attachBTFID          uint32         // 224
	_                    uint32
}

// Values from include/uapi/linux/bpf.h.
const (
	bpfMapTypeArray     = 2
	bpfProgTypeSyscall  = 31
	bpfFSleepable       = 1 << 4
	loaderMapName       = "__loader.map"
	loaderProgName      = "__loader.prog"
	loaderLicense       = "Dual BSD/GPL"
	maxLoadAttempts     = 10       // EAGAIN retries of BPF_PROG_LOAD
	initialLogSize      = 64 << 10 // verifier log buffer, grown on ENOSPC
	maxLogSize          = 16 << 20
	kernelMapHashSize   = 32
	kernelObjNameLength = 16
)

// bpf issues one bpf(2) command. attr must point at a struct from this file
// whose pointer fields reference live Go memory.
func bpf(cmd Cmd, attr unsafe.Pointer, size uintptr) (int, unix.Errno) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	return int(r), errno
}

// bpfVerified issues a bpf(2) command that runs the verifier (a program
// load, or a loader run whose programs load theirs) with every signal
// blocked on the calling thread. The verifier gives up with EAGAIN as
// soon as a signal is pending for the thread (kernel/bpf/verifier.c,
// do_check), and the Go runtime signals running threads to preempt
// them (SIGURG): a program load can be retried, but a loader's nested
// loads fail its run, and a loader run cannot be repeated (it has
// written the fds and relocations of what it created so far). A blocked
// signal is not pending in that sense (recalc_sigpending), so the
// verifier runs to its end; signals sent to the process meanwhile go to
// another thread, and those sent to this one are delivered once the
// mask is restored. The thread is locked for the call, so the mask
// changes this thread alone, and the runtime starts new threads with
// its own mask, not this one. One cost: the profiler's signal waits too,
// so a CPU profile gives such a call one sample at most, whatever its
// length (measure its time with the process's CPU time instead).
func bpfVerified(cmd Cmd, attr unsafe.Pointer, size uintptr) (int, unix.Errno) {
	runtime.LockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^all.Val[i]
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, &old); err != nil {
		runtime.UnlockOSThread()
		return -1, errnoOf(err)
	}
	r, errno := bpf(cmd, attr, size)
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil); err != nil {
		// Restoring the mask the runtime set cannot fail for a valid
		// set. If it did, the thread stays locked to this goroutine, so
		// no other goroutine runs with its signals blocked, and the
		// runtime ends the thread when this goroutine exits.
		return r, errno
	}
	runtime.UnlockOSThread()
	return r, errno
}

// errnoOf returns err's errno, or EINVAL if it has none.
func errnoOf(err error) unix.Errno {
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return unix.EINVAL
}

// objName returns a NUL-padded object name, truncated to 15 bytes.
func objName(s string) [kernelObjNameLength]byte {
	var b [kernelObjNameLength]byte
	copy(b[:kernelObjNameLength-1], s)
	return b
}

// cString returns s as a NUL-terminated byte slice.
func cString(s string) []byte { return append([]byte(s), 0) }

// ptr returns a pointer to b's first byte, or nil for an empty slice.
func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func newFD(raw int) *FD { return &FD{raw: raw} }

// Close closes the descriptor. Closing twice, or a nil FD, is not an error.
func (fd *FD) Close() error {
	if fd == nil || fd.raw < 0 {
		return nil
	}
	raw := fd.raw
	fd.raw = -1
	if err := unix.Close(raw); err != nil {
		return fmt.Errorf("bpfsys/close %d: %w", raw, err)
	}
	return nil
}
