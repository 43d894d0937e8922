package lskel

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/cilium/ebpf/asm"
)

// Errors of the analysis. Offsets are loader instruction indices ("insn N")
// or blob byte offsets ("offset N").
func loaderErr(insn int, err error) error {
	return &FormatError{Part: "loader", Where: fmt.Sprintf("insn %d", insn), Err: err}
}

func blobErr(off int64, field string, err error) error {
	return &FormatError{Part: "blob", Where: fmt.Sprintf("offset %d", off), Field: field, Err: err}
}

// rawInsn is one decoded instruction slot (struct bpf_insn), its opcode read
// with cilium/ebpf's asm names. For an ld_imm64 the first slot carries the
// 64-bit immediate in imm64 and the second slot is marked wide2.
type rawInsn struct {
	imm64  uint64
	imm    int32
	second int32 // ld_imm64: the second slot's immediate
	off    int16
	op     asm.OpCode // the code byte
	dst    asm.Register
	src    asm.Register
	wide2  bool
}

// Source registers of ld_imm64 that cilium/ebpf does not name
// (include/uapi/linux/bpf.h).
const (
	pseudoMapFD       asm.Register = 1 // BPF_PSEUDO_MAP_FD: a map by file descriptor
	pseudoMapValue    asm.Register = 2 // BPF_PSEUDO_MAP_VALUE: an address in a map by file descriptor
	pseudoMapIdx      asm.Register = 5 // BPF_PSEUDO_MAP_IDX: the fd_array index of a map
	pseudoMapIdxValue asm.Register = 6 // BPF_PSEUDO_MAP_IDX_VALUE: an address in that map's value
)

// atomicFetch is the BPF_FETCH flag in the immediate of an atomic store: the
// old value is written back to the source register.
const atomicFetch = 0x01

// isCall reports whether in is a call of a helper, a subprogram or a kfunc
// (BPF_JMP | BPF_CALL | BPF_K; the source register says which).
func (in rawInsn) isCall() bool {
	return in.op.JumpOp() == asm.Call && in.op.Source() == asm.ImmSource
}

// decodeInsns splits instruction bytes into slots, checking ld_imm64 pairs.
// It decodes into dst's memory when dst is large enough (every slot of the
// result is written).
func decodeInsns(dst []rawInsn, b []byte, part string) ([]rawInsn, error) {
	if len(b)%insnSize != 0 {
		return nil, &FormatError{Part: part, Err: fmt.Errorf("length %d is not a multiple of %d", len(b), insnSize)}
	}
	out := slices.Grow(dst[:0], len(b)/insnSize)[:len(b)/insnSize]
	for i := 0; i < len(out); i++ {
		s := b[i*insnSize:]
		in := rawInsn{
			op:  asm.OpCode(s[0]),
			dst: asm.Register(s[1] & 0x0f),
			src: asm.Register(s[1] >> 4),
			off: int16(binary.LittleEndian.Uint16(s[2:])),
			imm: int32(binary.LittleEndian.Uint32(s[4:])),
		}
		if in.op.IsDWordLoad() {
			if i+1 >= len(out) {
				return nil, &FormatError{Part: part, Where: fmt.Sprintf("insn %d", i), Err: errors.New("ld_imm64 without its second slot")}
			}
			t := b[(i+1)*insnSize:]
			if t[0] != 0 || t[1] != 0 || t[2] != 0 || t[3] != 0 {
				return nil, &FormatError{Part: part, Where: fmt.Sprintf("insn %d", i+1), Err: errors.New("second slot of ld_imm64 has a non-zero opcode, register or offset")}
			}
			in.second = int32(binary.LittleEndian.Uint32(t[4:]))
			in.imm64 = uint64(uint32(in.imm)) | uint64(uint32(in.second))<<32
			out[i] = in
			out[i+1] = rawInsn{wide2: true}
			i++
			continue
		}
		out[i] = in
	}
	return out, nil
}

// dataSum is SHA-256 of the data blob.
func (w *loaderWalk) dataSum() [32]byte {
	if w.dataSHA256 != nil {
		return *w.dataSHA256
	}
	return sha256Of(w.data)
}

// sha256Of is a convenience for digests stored as arrays.
func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }

func sortedUnique(m map[CtxField]bool) []CtxField {
	out := make([]CtxField, 0, len(m))
	for f := range m {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b CtxField) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Size, b.Size))
	})
	return out
}

// Abstract values of the loader walk.
type vkind uint8

const (
	vUnknown  vkind = iota
	vImm            // n: a constant (mov or ld_imm64 src 0; wide marks the latter)
	vBlobPtr        // n: address of blob byte n
	vBlobVal        // n: value loaded from blob byte n
	vCtxPtr         // n: address of context byte n
	vCtxVal         // n: value loaded from context byte n
	vStackPtr       // n: r10 + n
	vStackVal       // n: value loaded from r10 + n
	vCallRet        // n: result of Calls[n]
	vMapPtr         // n: fd_array index of an ld_imm64 src 5 (the kernel's struct bpf_map *)
	vMapField       // n: offset read from a vMapPtr; aux: the map index
)

type absVal struct {
	kind vkind
	n    int64
	size int   // access size for loaded values
	aux  int64 // vMapField: map index
	insn int   // producing instruction
	wide bool  // vImm from ld_imm64
}

type blobWrite struct {
	insn int
	off  int64
	size int
	src  absVal
}

// retStore is a store of a bpf() result: a map fd into the fd_array, an
// inner map or program fd onto the stack.
type retStore struct {
	insn  int
	call  int
	stack bool
	off   int64
	size  int
}

type hashChunk struct {
	value     uint64
	constInsn int
	cmpInsn   int
	target    int
}

// walkScratch is memory an Analyze needs while it runs and none of its
// results keep: decoded instructions, the loader's blob stores and their
// order, the stack. Nothing in it points anywhere (no caller's bytes are
// kept alive); Analyze takes one from scratchPool and puts it back, so
// measuring many artifacts does not allocate it again each time.
type walkScratch struct {
	code      []rawInsn // the loader
	prog      []rawInsn // one embedded program at a time (relocSlots)
	writes    []blobWrite
	retStores []retStore
	sorted    []int
	stack     map[int64]absVal
	helpers   map[int32]bool
	ctxR      map[CtxField]bool
	ctxW      map[CtxField]bool
	chunks    map[int64]hashChunk
	usedMaps  map[int]bool
	retByCall map[int][]retStore
	slots     map[int]int
	walk      loaderWalk // the walk itself
}

var scratchPool = sync.Pool{New: func() any {
	return &walkScratch{
		stack:     map[int64]absVal{},
		helpers:   map[int32]bool{},
		ctxR:      map[CtxField]bool{},
		ctxW:      map[CtxField]bool{},
		chunks:    map[int64]hashChunk{},
		usedMaps:  map[int]bool{},
		retByCall: map[int][]retStore{},
		slots:     map[int]int{},
	}
}}

// maxPooledInsns bounds the scratch memory kept in the pool: a walk of a
// larger loader leaves its scratch to the garbage collector.
const maxPooledInsns = 1 << 14

// release returns w's scratch memory to the pool. w must not be used after.
func (w *loaderWalk) release() {
	sc := w.scratch
	if sc == nil {
		return
	}
	w.scratch = nil
	sc.code, sc.writes, sc.retStores = w.code[:0], w.writes[:0], w.retStores[:0]
	for _, n := range []int{cap(sc.code), cap(sc.prog), cap(sc.writes), cap(sc.retStores), cap(sc.sorted),
		len(sc.stack), len(sc.helpers), len(sc.ctxR), len(sc.ctxW), len(sc.chunks), len(sc.usedMaps), len(sc.retByCall), len(sc.slots)} {
		if n > maxPooledInsns {
			return
		}
	}
	clear(sc.stack)
	clear(sc.helpers)
	clear(sc.ctxR)
	clear(sc.ctxW)
	clear(sc.chunks)
	clear(sc.usedMaps)
	clear(sc.retByCall)
	clear(sc.slots)
	sc.walk = loaderWalk{} // keeps nothing of the caller's (data, calls)
	scratchPool.Put(sc)
}

type loaderWalk struct {
	code       []rawInsn
	data       []byte
	dataSHA256 *[32]byte // SHA-256(data) when the caller has it (AnalyzeHashed)
	scratch    *walkScratch

	regs  [11]absVal
	stack map[int64]absVal

	calls     []Call
	writes    []blobWrite
	retStores []retStore // stores of bpf() results (fds)
	copies    []Override // helper copies from host memory into the blob
	untracked []int
	helpers   map[int32]bool
	ctxR      map[CtxField]bool
	ctxW      map[CtxField]bool

	prologue  int          // first ld_imm64 src 5, -1 if none
	usedMaps  map[int]bool // fd_array indexes of ld_imm64 map references; -1: by fd
	chunks    map[int64]hashChunk
	exclInsn  int // -1 if no exclusivity check
	exclJump  int
	lastCheck int
}

func newLoaderWalk(insns, data []byte) (*loaderWalk, error) {
	switch {
	case len(insns) == 0:
		return nil, &FormatError{Part: "loader", Err: errors.New("no instructions")}
	case len(insns) > MaxInsnsSize:
		return nil, &FormatError{Part: "loader", Err: tooLarge(len(insns), MaxInsnsSize)}
	case len(data) == 0:
		return nil, &FormatError{Part: "blob", Err: errors.New("empty data blob")}
	case len(data) > MaxDataSize:
		return nil, &FormatError{Part: "blob", Err: tooLarge(len(data), MaxDataSize)}
	}
	sc := scratchPool.Get().(*walkScratch)
	code, err := decodeInsns(sc.code, insns, "loader")
	if err != nil {
		scratchPool.Put(sc)
		return nil, err
	}
	sc.walk = loaderWalk{
		code:      code,
		data:      data,
		scratch:   sc,
		writes:    sc.writes[:0],
		retStores: sc.retStores[:0],
		stack:     sc.stack,
		helpers:   sc.helpers,
		ctxR:      sc.ctxR,
		ctxW:      sc.ctxW,
		chunks:    sc.chunks,
		usedMaps:  sc.usedMaps,
		prologue:  -1,
		exclInsn:  -1,
		lastCheck: -1,
	}
	return &sc.walk, nil
}

// blobRange checks that [off, off+size) lies inside the blob.
func (w *loaderWalk) blobRange(off int64, size int64) bool {
	return off >= 0 && size >= 0 && off <= int64(len(w.data)) && size <= int64(len(w.data))-off
}

func (w *loaderWalk) run() error {
	// On entry r1 is the context and r10 the frame pointer.
	w.regs[1] = absVal{kind: vCtxPtr}
	w.regs[10] = absVal{kind: vStackPtr}
	for i := 0; i < len(w.code); i++ {
		in := w.code[i]
		if in.wide2 {
			continue
		}
		if in.dst > asm.R10 || in.src > asm.R10 {
			return loaderErr(i, fmt.Errorf("register out of range (dst r%d, src r%d)", in.dst, in.src))
		}
		var err error
		switch in.op.Class() {
		case asm.LdClass:
			err = w.ld(i, in)
		case asm.LdXClass:
			err = w.ldx(i, in)
		case asm.StClass, asm.StXClass:
			err = w.store(i, in)
		case asm.ALUClass, asm.ALU64Class:
			w.alu(i, in)
		case asm.JumpClass, asm.Jump32Class:
			err = w.jmp(i, in)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *loaderWalk) ld(i int, in rawInsn) error {
	if !in.op.IsDWordLoad() {
		// Legacy packet loads: r0 is clobbered, as are the call registers.
		for r := 0; r <= 5; r++ {
			w.regs[r] = absVal{}
		}
		return nil
	}
	switch in.src {
	case asm.R0: // a constant
		w.regs[in.dst] = absVal{kind: vImm, n: int64(in.imm64), insn: i, wide: true}
	case pseudoMapIdx: // the loader map's struct bpf_map *
		if w.prologue < 0 {
			w.prologue = i
		}
		w.usedMaps[int(uint32(in.imm))] = true
		w.regs[in.dst] = absVal{kind: vMapPtr, n: int64(in.imm), insn: i}
	case pseudoMapIdxValue: // an address in the map value
		if in.imm != 0 {
			return loaderErr(i, fmt.Errorf("ld_imm64 of map index %d: a loader has only its data map (index 0): %w", in.imm, ErrUnsupportedLoader))
		}
		w.usedMaps[0] = true
		w.regs[in.dst] = absVal{kind: vBlobPtr, n: int64(uint32(in.second)), insn: i}
	case pseudoMapFD, pseudoMapValue: // a map named by the loading process's fd
		w.usedMaps[-1] = true
		w.regs[in.dst] = absVal{insn: i}
	default:
		w.regs[in.dst] = absVal{insn: i}
	}
	return nil
}

func (w *loaderWalk) ldx(i int, in rawInsn) error {
	mode, size := in.op.Mode(), in.op.Size().Sizeof()
	if mode != asm.MemMode && mode != asm.MemSXMode {
		w.regs[in.dst] = absVal{insn: i}
		return nil
	}
	base := w.regs[in.src]
	addr := base.n + int64(in.off)
	v := absVal{insn: i, size: size}
	switch base.kind {
	case vCtxPtr:
		w.ctxR[CtxField{Offset: int(addr), Size: size}] = true
		v.kind, v.n = vCtxVal, addr
	case vStackPtr:
		if s, ok := w.stack[addr]; ok && s.size == size {
			v = s
		} else {
			v.kind, v.n = vStackVal, addr
		}
	case vBlobPtr:
		if !w.blobRange(addr, int64(size)) {
			return loaderErr(i, fmt.Errorf("load of %d bytes at blob offset %d is outside the %d-byte blob", size, addr, len(w.data)))
		}
		v.kind, v.n = vBlobVal, addr
	case vMapPtr:
		v.kind, v.n, v.aux = vMapField, int64(in.off), base.n
	}
	w.regs[in.dst] = v
	return nil
}

func (w *loaderWalk) store(i int, in rawInsn) error {
	class, mode, size := in.op.Class(), in.op.Mode(), in.op.Size().Sizeof()
	var src absVal
	switch {
	case class == asm.StClass && mode == asm.MemMode:
		src = absVal{kind: vImm, n: int64(in.imm), insn: i}
	case class == asm.StXClass && mode == asm.MemMode:
		src = w.regs[in.src]
	case class == asm.StXClass && mode == asm.AtomicMode:
		src = absVal{insn: i}
		if in.imm&atomicFetch != 0 {
			w.regs[in.src] = absVal{insn: i}
		}
	default:
		return loaderErr(i, fmt.Errorf("store opcode %#02x: %w", uint8(in.op), ErrUnsupportedLoader))
	}
	base := w.regs[in.dst]
	addr := base.n + int64(in.off)
	if src.kind == vCallRet && (base.kind == vBlobPtr || base.kind == vStackPtr) {
		w.retStores = append(w.retStores, retStore{insn: i, call: int(src.n), stack: base.kind == vStackPtr, off: addr, size: size})
	}
	switch base.kind {
	case vBlobPtr:
		if !w.blobRange(addr, int64(size)) {
			return loaderErr(i, fmt.Errorf("store of %d bytes at blob offset %d is outside the %d-byte blob", size, addr, len(w.data)))
		}
		w.writes = append(w.writes, blobWrite{insn: i, off: addr, size: size, src: src})
	case vCtxPtr:
		w.ctxW[CtxField{Offset: int(addr), Size: size}] = true
	case vStackPtr:
		if addr >= -512 && addr < 0 {
			src.size = size
			w.stack[addr] = src
		}
	default:
		w.untracked = append(w.untracked, i)
	}
	return nil
}

func (w *loaderWalk) alu(i int, in rawInsn) {
	op, isX, is64 := in.op.ALUOp(), in.op.Source() == asm.RegSource, in.op.Class() == asm.ALU64Class
	d := &w.regs[in.dst]
	switch {
	case op == asm.Mov && in.off == 0: // not movsx
		switch {
		case isX && is64:
			*d = w.regs[in.src]
		case !isX && is64:
			*d = absVal{kind: vImm, n: int64(in.imm), insn: i}
		case !isX:
			*d = absVal{kind: vImm, n: int64(uint32(in.imm)), insn: i}
		default:
			*d = absVal{insn: i}
		}
	case op == asm.Add && !isX && is64:
		switch d.kind {
		case vImm, vBlobPtr, vCtxPtr, vStackPtr:
			d.n += int64(in.imm)
			d.insn, d.wide = i, false
		default:
			*d = absVal{insn: i}
		}
	default:
		*d = absVal{insn: i}
	}
}

func (w *loaderWalk) jmp(i int, in rawInsn) error {
	switch {
	case in.isCall():
		return w.call(i, in)
	case in.op.JumpOp() == asm.JNE && in.op.Class() == asm.JumpClass: // 64-bit
		w.compare(i, in)
	}
	return nil
}

// compare recognises the two checks of the in-loader data-hash prologue:
// map->excl != 1 and map->sha[8k..8k+8) != constant.
func (w *loaderWalk) compare(i int, in rawInsn) {
	target := i + 1 + int(in.off)
	a := w.regs[in.dst]
	if in.op.Source() == asm.ImmSource {
		if a.kind == vMapField && a.aux == 0 && a.n == mapStructExclOffset && a.size == 4 && in.imm == 1 {
			w.exclInsn, w.exclJump, w.lastCheck = i, target, i
		}
		return
	}
	b := w.regs[in.src]
	if b.kind == vMapField {
		a, b = b, a
	}
	if a.kind != vMapField || a.aux != 0 || a.size != digestChunkSize || b.kind != vImm || !b.wide {
		return
	}
	if a.n < 0 || a.n%digestChunkSize != 0 || a.n >= digestChunks*digestChunkSize {
		return
	}
	if _, dup := w.chunks[a.n]; dup {
		w.chunks[a.n] = hashChunk{constInsn: -1} // poisoned: reported by layout
		return
	}
	w.chunks[a.n] = hashChunk{value: uint64(b.n), constInsn: b.insn, cmpInsn: i, target: target}
	w.lastCheck = i
}

func (w *loaderWalk) call(i int, in rawInsn) error {
	if in.src != asm.R0 {
		return loaderErr(i, fmt.Errorf("call with src_reg %d (bpf-to-bpf or kfunc call): %w", in.src, ErrUnsupportedLoader))
	}
	w.helpers[in.imm] = true
	ret := absVal{insn: i}
	switch in.imm {
	case helperSysBPF:
		if len(w.calls) >= maxLoaderCalls {
			return loaderErr(i, fmt.Errorf("more than %d bpf() calls: %w", maxLoaderCalls, ErrTooLarge))
		}
		c, err := w.sysBPF(i)
		if err != nil {
			return err
		}
		ret = absVal{kind: vCallRet, n: int64(len(w.calls)), insn: i}
		w.calls = append(w.calls, c)
	case helperCopyFromUser, helperProbeReadKern:
		// dst = r1, size = r2, src = r3. A copy from a pointer the host put
		// in the context into the blob is a host override.
		dst, size, src := w.regs[1], w.regs[2], w.regs[3]
		if dst.kind == vBlobPtr {
			if size.kind != vImm || !w.blobRange(dst.n, size.n) {
				return loaderErr(i, fmt.Errorf("helper %d copies into the blob at offset %d with size %s: %w", in.imm, dst.n, describe(size), ErrUnsupportedLoader))
			}
			ctxOff := -1
			if src.kind == vCtxVal {
				ctxOff = int(src.n)
			}
			if len(w.copies) >= maxLoaderCalls {
				return loaderErr(i, fmt.Errorf("more than %d copies into the blob: %w", maxLoaderCalls, ErrTooLarge))
			}
			w.copies = append(w.copies, Override{Insn: i, Blob: Range{Offset: int(dst.n), Size: int(size.n)}, CtxOffset: ctxOff, Map: -1})
		}
	}
	for r := 1; r <= 5; r++ {
		w.regs[r] = absVal{insn: i}
	}
	w.regs[0] = ret
	return nil
}

func (w *loaderWalk) sysBPF(i int) (Call, error) {
	cmd, attr, size := w.regs[1], w.regs[2], w.regs[3]
	if cmd.kind != vImm || attr.kind != vBlobPtr || size.kind != vImm {
		return Call{}, loaderErr(i, fmt.Errorf("bpf() with arguments (%s, %s, %s), want (constant, blob address, constant): %w",
			describe(cmd), describe(attr), describe(size), ErrUnsupportedLoader))
	}
	if size.n <= 0 || size.n > maxAttrSize {
		return Call{}, loaderErr(i, fmt.Errorf("bpf() attr size %d out of range (1..%d)", size.n, maxAttrSize))
	}
	if !w.blobRange(attr.n, size.n) {
		return Call{}, loaderErr(i, fmt.Errorf("bpf() attr [%d, %d) is outside the %d-byte blob", attr.n, attr.n+size.n, len(w.data)))
	}
	if cmd.n < 0 || cmd.n > 0xffffffff {
		return Call{}, loaderErr(i, fmt.Errorf("bpf() command %d out of range", cmd.n))
	}
	return Call{Insn: i, Cmd: Cmd(cmd.n), AttrOffset: int(attr.n), AttrSize: int(size.n)}, nil
}

// describe names an abstract value in messages.
func describe(v absVal) string {
	formats := [...]string{
		vImm:      "constant %d",
		vBlobPtr:  "blob+%d",
		vBlobVal:  "blob[%d]",
		vCtxPtr:   "ctx+%d",
		vCtxVal:   "ctx[%d]",
		vStackPtr: "r10%+d",
		vStackVal: "stack[%d]",
		vCallRet:  "result of bpf() call %d",
		vMapPtr:   "map %d",
	}
	switch {
	case v.kind == vMapField:
		return fmt.Sprintf("map %d field +%d", v.aux, v.n)
	case int(v.kind) < len(formats) && formats[v.kind] != "":
		return fmt.Sprintf(formats[v.kind], v.n)
	}
	return "unknown"
}

// layout turns the facts gathered by run into a Layout, checking every
// offset and length against the blob.
func (w *loaderWalk) layout() (*Layout, error) {
	l := &Layout{
		LoaderInsns:     len(w.code),
		DataSHA256:      w.dataSum(),
		PrologueInsn:    -1,
		CheckFailTarget: -1,
		Calls:           w.calls,
		UntrackedStores: w.untracked,
		CtxReads:        sortedUnique(w.ctxR),
		CtxWrites:       sortedUnique(w.ctxW),
		BTF:             Range{Offset: -1},
	}
	if len(w.helpers) > 0 {
		l.Helpers = slices.Sorted(maps.Keys(w.helpers))
	}
	if len(w.usedMaps) > 0 {
		l.UsedMaps = slices.Sorted(maps.Keys(w.usedMaps))
	}
	var nMaps, nProgs int
	for _, c := range w.calls {
		switch c.Cmd {
		case CmdMapCreate:
			nMaps++
		case CmdProgLoad:
			nProgs++
		}
	}
	if nMaps > 0 {
		l.Maps = make([]Map, 0, nMaps)
	}
	if nProgs > 0 {
		l.Programs = make([]Program, 0, nProgs)
	}
	if err := w.hashCheck(l); err != nil {
		return nil, err
	}
	a := attrReader{w: w, sorted: w.scratch.sorted[:0], retByCall: w.scratch.retByCall, slots: w.scratch.slots}
	for i := range w.writes {
		a.sorted = append(a.sorted, i)
	}
	defer func() { w.scratch.sorted = a.sorted }()
	slices.SortStableFunc(a.sorted, func(i, j int) int { return cmp.Compare(w.writes[i].off, w.writes[j].off) })
	for _, r := range w.retStores {
		a.retByCall[r.call] = append(a.retByCall[r.call], r)
	}
	for k, c := range w.calls {
		var err error
		switch c.Cmd {
		case CmdBTFLoad:
			err = a.btfLoad(l, c)
		case CmdMapCreate:
			err = a.mapCreate(l, k, c)
		case CmdMapUpdateElem, CmdMapFreeze:
			err = a.mapUpdate(l, c)
		case CmdProgLoad:
			err = a.progLoad(l, k, c)
		default:
			err = loaderErr(c.Insn, fmt.Errorf("bpf() command %v: %w", c.Cmd, ErrUnsupportedLoader))
		}
		if err != nil {
			return nil, err
		}
	}
	w.overrides(l)
	switch {
	case l.EmbeddedDataHash != nil:
		l.Generation = GenerationLoaderCheck
	case l.HostOverrides:
		l.Generation = GenerationUnchecked
	case len(l.Maps) > 0:
		l.Generation = GenerationKernelCheck
	default:
		l.Generation = GenerationIndeterminate
	}
	return l, nil
}

// hashCheck assembles the in-loader data-hash check, if the loader has one.
func (w *loaderWalk) hashCheck(l *Layout) error {
	if w.prologue < 0 && len(w.chunks) == 0 {
		return nil
	}
	where := w.prologue
	if where < 0 {
		where = 0
	}
	digest := make([]byte, digestChunks*digestChunkSize)
	target := -1
	for k := 0; k < digestChunks; k++ {
		c, ok := w.chunks[int64(k*digestChunkSize)]
		if !ok || c.constInsn < 0 {
			return loaderErr(where, fmt.Errorf("data-hash check: digest bytes [%d,%d) not compared exactly once", k*8, k*8+8))
		}
		if target >= 0 && c.target != target {
			return loaderErr(c.cmpInsn, fmt.Errorf("data-hash check jumps to insn %d, earlier checks to %d", c.target, target))
		}
		target = c.target
		binary.LittleEndian.PutUint64(digest[k*digestChunkSize:], c.value)
		l.HashInsns = append(l.HashInsns, c.constInsn)
	}
	if w.exclInsn >= 0 {
		if w.exclJump != target {
			return loaderErr(w.exclInsn, fmt.Errorf("exclusivity check jumps to insn %d, data-hash checks to %d", w.exclJump, target))
		}
		l.ExclusivityCheck = true
	}
	l.EmbeddedDataHash = digest
	l.PrologueInsn = w.prologue
	l.CheckFailTarget = target
	l.CheckPrecedesCalls = len(w.calls) == 0 || w.lastCheck < w.calls[0].Insn
	return nil
}
