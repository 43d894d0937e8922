//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Run performs the light-skeleton run sequence of libbpf's bpf_load_and_run()
// (see the package documentation): create, fill, freeze and hash the data
// map, load the loader with the signature when one is given, run it with the
// context. hook, when not nil, is called before each step with that step; if
// it returns an error the step is not performed and Run returns the error
// (wrapped). ctx is checked before each step and between load retries; a
// system call in progress is not interrupted.
//
// On error, Run still returns the LoadResult with Step set to the failing
// step and everything Run created closed: the kernel keeps no object of Run's
// making. A loader that runs and returns a negative value yields a
// *LoaderError; a refused command yields a *SyscallError. Objects the loader
// created are reachable only through the fds in CtxOut, which the caller owns.
func Run(ctx context.Context, req LoadRequest, hook func(Step) error) (*LoadResult, error) {
	if err := req.validate(); err != nil {
		return nil, fmt.Errorf("bpfsys/run: %w", err)
	}
	r := runner{req: &req, res: &LoadResult{}}
	if err := r.run(ctx, hook); err != nil {
		err = closeAll(err, r.res.LoaderFD, r.res.MapFD)
		r.res.LoaderFD, r.res.MapFD = nil, nil
		return r.res, fmt.Errorf("bpfsys/run: %w", err)
	}
	return r.res, nil
}

// closeAll closes fds, joining close errors to err.
func closeAll(err error, fds ...*FD) error {
	for _, fd := range fds {
		err = errors.Join(err, fd.Close())
	}
	return err
}

// runner holds one Run's request and what it has learnt so far.
type runner struct {
	req *LoadRequest
	res *LoadResult
}

func (r *runner) run(ctx context.Context, hook func(Step) error) error {
	steps := []struct {
		step Step
		do   func(context.Context) error
	}{
		{MapCreate, r.mapCreate},
		{MapUpdate, r.mapUpdate},
		{MapFreeze, r.mapFreeze},
		{MapInfo, r.mapInfo},
		{ProgLoad, r.progLoad},
		{LoaderInfo, r.loaderInfo},
		{TestRun, r.testRun},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			r.res.Step = s.step
			return fmt.Errorf("%s: %w", s.step, err)
		}
		if hook != nil {
			if err := hook(s.step); err != nil {
				r.res.Step = s.step
				return fmt.Errorf("%s: hook: %w", s.step, err)
			}
		}
		if err := s.do(ctx); err != nil {
			r.res.Step = s.step
			return err
		}
	}
	return nil
}

func (r *runner) mapCreate(context.Context) error {
	attr := mapCreateAttr{
		mapType:    bpfMapTypeArray,
		keySize:    4,
		valueSize:  uint32(len(r.req.Data)),
		maxEntries: 1,
		mapName:    objName(loaderMapName),
	}
	if len(r.req.ExclHash) > 0 {
		attr.exclProgHash = ptr(r.req.ExclHash)
		attr.exclProgHashSize = uint32(len(r.req.ExclHash))
	}
	fd, errno := bpf(CmdMapCreate, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(r.req.ExclHash)
	if errno != 0 {
		return &SyscallError{Step: MapCreate, Cmd: CmdMapCreate, Errno: errno}
	}
	r.res.MapFD = newFD(fd)
	return nil
}

func (r *runner) mapUpdate(context.Context) error {
	var key uint32
	attr := mapElemAttr{
		mapFD: uint32(r.res.MapFD.raw),
		key:   unsafe.Pointer(&key),
		value: ptr(r.req.Data),
	}
	_, errno := bpf(CmdMapUpdateElem, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(r.req.Data)
	if errno != 0 {
		return &SyscallError{Step: MapUpdate, Cmd: CmdMapUpdateElem, Errno: errno}
	}
	return nil
}

func (r *runner) mapFreeze(context.Context) error {
	attr := mapFDAttr{mapFD: uint32(r.res.MapFD.raw)}
	if _, errno := bpf(CmdMapFreeze, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); errno != 0 {
		return &SyscallError{Step: MapFreeze, Cmd: CmdMapFreeze, Errno: errno}
	}
	return nil
}

// mapInfo asks for the map's hash: the kernel computes the SHA-256 of the
// frozen value (array_map_get_hash) and caches it in map->sha, where the
// signed loader reads it.
func (r *runner) mapInfo(context.Context) error {
	var hash [kernelMapHashSize]byte
	info := mapInfo{hash: unsafe.Pointer(&hash), hashSize: kernelMapHashSize}
	if errno := objInfo(r.res.MapFD.raw, unsafe.Pointer(&info), unsafe.Sizeof(info)); errno != 0 {
		return &SyscallError{Step: MapInfo, Cmd: CmdObjGetInfoByFD, Errno: errno}
	}
	r.res.MapHash = hash
	r.res.MapID = info.id
	return nil
}

func (r *runner) progLoad(ctx context.Context) error {
	fdArray := []int32{int32(r.res.MapFD.raw)}
	license := cString(loaderLicense)
	attr := progLoadAttr{
		progType:  bpfProgTypeSyscall,
		insnCnt:   uint32(len(r.req.Insns) / 8),
		insns:     ptr(r.req.Insns),
		license:   ptr(license),
		progFlags: bpfFSleepable,
		progName:  objName(loaderProgName),
		fdArray:   unsafe.Pointer(&fdArray[0]),
	}
	if len(r.req.Signature) > 0 {
		attr.signature = ptr(r.req.Signature)
		attr.signatureSize = uint32(len(r.req.Signature))
		attr.keyringID = r.req.KeyringID
	}
	fd, log, err := loadProgram(ctx, ProgLoad, &attr, r.req.LogBuf, r.req.LogLevel)
	runtime.KeepAlive(fdArray)
	runtime.KeepAlive(license)
	runtime.KeepAlive(r.req.Insns)
	runtime.KeepAlive(r.req.Signature)
	r.res.VerifierLog = log
	if err != nil {
		return err
	}
	r.res.LoaderFD = fd
	return nil
}

func (r *runner) loaderInfo(context.Context) error {
	var info progInfo
	if errno := objInfo(r.res.LoaderFD.raw, unsafe.Pointer(&info), unsafe.Sizeof(info)); errno != 0 {
		return &SyscallError{Step: LoaderInfo, Cmd: CmdObjGetInfoByFD, Errno: errno}
	}
	r.res.LoaderID = info.id
	r.res.LoaderTag = info.tag
	return nil
}

// testRun runs the loader once. For a BPF_PROG_TYPE_SYSCALL program the
// kernel copies ctx_in in, runs the program, and copies the context back to
// ctx_in; data_*, ctx_out, repeat, duration and flags must be zero.
func (r *runner) testRun(context.Context) error {
	ctxBuf := append([]byte(nil), r.req.Ctx...)
	attr := testRunAttr{
		progFD:    uint32(r.res.LoaderFD.raw),
		ctxSizeIn: uint32(len(ctxBuf)),
		ctxIn:     ptr(ctxBuf),
	}
	_, errno := bpfVerified(CmdProgTestRun, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(ctxBuf)
	if errno != 0 {
		return &SyscallError{Step: TestRun, Cmd: CmdProgTestRun, Errno: errno}
	}
	r.res.CtxOut = ctxBuf
	r.res.Retval = int32(attr.retval)
	if r.res.Retval < 0 {
		return &LoaderError{Retval: r.res.Retval}
	}
	return nil
}

// loadProgram issues BPF_PROG_LOAD with attr, retrying EAGAIN (a signal
// interrupted the verifier) up to maxLoadAttempts times and, when a log is
// wanted, growing the log buffer on ENOSPC up to maxLogSize. It returns the
// verifier log (empty unless wantLog) also on failure. The caller keeps the
// buffers attr points at alive.
func loadProgram(ctx context.Context, step Step, attr *progLoadAttr, wantLog bool, level uint32) (*FD, string, error) {
	var logBuf []byte
	if wantLog {
		if level == 0 {
			level = 1
		}
		logBuf = make([]byte, initialLogSize)
	}
	for attempt := 1; ; attempt++ {
		if wantLog {
			attr.logLevel = level
			attr.logSize = uint32(len(logBuf))
			attr.logBuf = ptr(logBuf)
		}
		fd, errno := bpfVerified(CmdProgLoad, unsafe.Pointer(attr), unsafe.Sizeof(*attr))
		runtime.KeepAlive(logBuf)
		log := cutNUL(logBuf)
		switch {
		case errno == 0:
			return newFD(fd), log, nil
		case errno == unix.EAGAIN && attempt < maxLoadAttempts:
			if err := ctx.Err(); err != nil {
				return nil, log, fmt.Errorf("%s: %w", step, err)
			}
		case errno == unix.ENOSPC && wantLog && len(logBuf) < maxLogSize:
			logBuf = make([]byte, 4*len(logBuf))
		default:
			return nil, log, &SyscallError{Step: step, Cmd: CmdProgLoad, Errno: errno}
		}
	}
}

// objInfo issues BPF_OBJ_GET_INFO_BY_FD for fd into the info struct at info.
func objInfo(fd int, info unsafe.Pointer, size uintptr) unix.Errno {
	attr := infoAttr{bpfFD: uint32(fd), infoLen: uint32(size), info: info}
	_, errno := bpf(CmdObjGetInfoByFD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return errno
}

// cutNUL returns b up to its first NUL byte as a string.
func cutNUL(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
