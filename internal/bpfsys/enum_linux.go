//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ProgramIDs returns the ids of every program loaded in the kernel, in
// increasing order, by walking BPF_PROG_GET_NEXT_ID from 0 until ENOENT.
// Programs come and go while the walk runs; the result is a snapshot that
// may miss programs loaded during the walk. Needs CAP_SYS_ADMIN.
func ProgramIDs() ([]uint32, error) {
	var ids []uint32
	attr := idAttr{}
	for {
		_, errno := bpf(CmdProgGetNextID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		if errno == unix.ENOENT {
			return ids, nil
		}
		if errno != 0 {
			return ids, fmt.Errorf("bpfsys/program ids: %w", &SyscallError{Cmd: CmdProgGetNextID, Errno: errno})
		}
		ids = append(ids, attr.nextID)
		attr.startID = attr.nextID
	}
}

// ProgramInfoByID returns what the kernel tells about program id. A program
// that no longer exists gives an error matching fs.ErrNotExist (ENOENT).
// Needs CAP_SYS_ADMIN.
func ProgramInfoByID(id uint32) (*ProgInfo, error) {
	attr := idAttr{startID: id}
	raw, errno := bpf(CmdProgGetFDByID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if errno != 0 {
		return nil, fmt.Errorf("bpfsys/program info %d: %w", id, &SyscallError{Cmd: CmdProgGetFDByID, Errno: errno})
	}
	fd := newFD(raw)
	info, err := programInfo(fd.Int())
	if err = closeAll(err, fd); err != nil {
		return info, fmt.Errorf("bpfsys/program info %d: %w", id, err)
	}
	return info, nil
}

// ProgramInfoByFD returns what the kernel tells about the program behind fd,
// for example a program fd a loader wrote into its context. Two
// BPF_OBJ_GET_INFO_BY_FD calls: the first learns the counts and lengths, the
// second fetches the map ids and the translated instructions.
func ProgramInfoByFD(fd int) (*ProgInfo, error) {
	info, err := programInfo(fd)
	if err != nil {
		return nil, fmt.Errorf("bpfsys/program info: %w", err)
	}
	return info, nil
}

func programInfo(fd int) (*ProgInfo, error) {
	var first progInfo
	if errno := objInfo(fd, unsafe.Pointer(&first), unsafe.Sizeof(first)); errno != 0 {
		return nil, &SyscallError{Cmd: CmdObjGetInfoByFD, Errno: errno}
	}
	mapIDs := make([]uint32, first.nrMapIDs)
	xlated := make([]byte, first.xlatedProgLen)
	var second progInfo
	if len(mapIDs) > 0 {
		second.nrMapIDs = uint32(len(mapIDs))
		second.mapIDs = unsafe.Pointer(&mapIDs[0])
	}
	if len(xlated) > 0 {
		second.xlatedProgLen = uint32(len(xlated))
		second.xlatedProgInsns = ptr(xlated)
	}
	if errno := objInfo(fd, unsafe.Pointer(&second), unsafe.Sizeof(second)); errno != 0 {
		return nil, &SyscallError{Cmd: CmdObjGetInfoByFD, Errno: errno}
	}
	runtime.KeepAlive(mapIDs)
	runtime.KeepAlive(xlated)
	if second.nrMapIDs < uint32(len(mapIDs)) {
		mapIDs = mapIDs[:second.nrMapIDs]
	}
	out := &ProgInfo{
		ID:            first.id,
		Type:          ebpf.ProgramType(first.progType),
		Name:          cutNUL(first.name[:]),
		Tag:           first.tag,
		MapIDs:        mapIDs,
		LoadTime:      time.Duration(first.loadTime),
		CreatedByUID:  first.createdByUID,
		XlatedSize:    first.xlatedProgLen,
		JitedSize:     first.jitedProgLen,
		BTFID:         first.btfID,
		VerifiedInsns: first.verifiedInsns,
		GPLCompatible: gplCompatible(first.bits),
	}
	// Callers that may not see raw instructions (bpf_dump_raw_ok) get
	// xlated_prog_len 0 or a zeroed xlated_prog_insns pointer and no bytes;
	// then there is nothing to digest.
	if n := second.xlatedProgLen; n > 0 && n <= uint32(len(xlated)) && second.xlatedProgInsns != nil {
		out.XlatedDigest = sha256.Sum256(xlated[:n])
		out.XlatedDumped = true
	}
	return out, nil
}

// gplCompatible extracts the one-bit bitfield gpl_compatible, the first
// bitfield of its 32-bit unit: the lowest bit on little-endian ABIs, the
// highest on big-endian ones.
func gplCompatible(bits uint32) bool {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return bits&1 != 0
	}
	return bits&(1<<31) != 0
}
