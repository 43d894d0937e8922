package lskel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cilium/ebpf/asm"
)

// attrReader reads attribute images and the pointer fields the loader
// stores into them.
type attrReader struct {
	w         *loaderWalk
	sorted    []int              // indices into w.writes, by offset then instruction
	retByCall map[int][]retStore // stores of each call's result, in instruction order
	slots     map[int]int        // fd_array slot -> index into Layout.Maps
}

// u32 reads a static field; fields past the attr size read as zero, as the
// kernel sees them.
func (a *attrReader) u32(c Call, field int) uint32 {
	if field+4 > c.AttrSize {
		return 0
	}
	return binary.LittleEndian.Uint32(a.w.data[c.AttrOffset+field:])
}

// lastWrite is the last loader store at blob offset off before instruction
// before, or nil.
func (a *attrReader) lastWrite(off int64, before int) *blobWrite {
	s, ws := a.sorted, a.w.writes
	lo := sort.Search(len(s), func(j int) bool { return ws[s[j]].off >= off })
	n := sort.Search(len(s)-lo, func(j int) bool { return ws[s[lo+j]].off > off })
	idx := s[lo : lo+n] // the writes at off, in instruction order
	j := sort.Search(len(idx), func(j int) bool { return a.w.writes[idx[j]].insn >= before })
	if j == 0 {
		return nil
	}
	return &a.w.writes[idx[j-1]]
}

// pointer returns the blob offset the loader stores into the 8-byte
// pointer field at attr+field before the call, or -1 if it stores none.
func (a *attrReader) pointer(c Call, field int, name string) (int64, error) {
	if field+8 > c.AttrSize {
		return -1, nil
	}
	wr := a.lastWrite(int64(c.AttrOffset+field), c.Insn)
	if wr == nil {
		return -1, nil
	}
	if wr.size != 8 || wr.src.kind != vBlobPtr {
		return 0, loaderErr(wr.insn, fmt.Errorf("%v attr at offset %d: %s set to %s (%d bytes), want a blob address", c.Cmd, c.AttrOffset, name, describe(wr.src), wr.size))
	}
	return wr.src.n, nil
}

// fdSlot returns the fd_array slot whose value the loader copies into the
// map_fd field at attr+0 before the call.
func (a *attrReader) fdSlot(c Call) (int, error) {
	wr := a.lastWrite(int64(c.AttrOffset), c.Insn)
	if wr == nil || wr.size != 4 || wr.src.kind != vBlobVal || wr.src.size != 4 ||
		wr.src.n%4 != 0 || wr.src.n < 0 || wr.src.n >= maxMapSlots*4 {
		return 0, loaderErr(c.Insn, fmt.Errorf("%v attr at offset %d: map_fd is not copied from an fd_array map slot", c.Cmd, c.AttrOffset))
	}
	return int(wr.src.n / 4), nil
}

func (a *attrReader) needSize(c Call, min int) error {
	if c.AttrSize < min {
		return loaderErr(c.Insn, fmt.Errorf("%v attr size %d, want at least %d", c.Cmd, c.AttrSize, min))
	}
	return nil
}

func (a *attrReader) btfLoad(l *Layout, c Call) error {
	if err := a.needSize(c, minAttrBTFLoad); err != nil {
		return err
	}
	if l.BTF.Offset >= 0 {
		return loaderErr(c.Insn, errors.New("second BPF_BTF_LOAD"))
	}
	ptr, err := a.pointer(c, 0, "btf")
	if err != nil {
		return err
	}
	size := a.u32(c, 16)
	if ptr < 0 || !a.w.blobRange(ptr, int64(size)) {
		return blobErr(int64(c.AttrOffset), "btf_load attr", fmt.Errorf("btf [%d, +%d) is not set or outside the blob", ptr, size))
	}
	l.BTF = Range{Offset: int(ptr), Size: int(size)}
	return nil
}

func (a *attrReader) mapCreate(l *Layout, k int, c Call) error {
	if err := a.needSize(c, minAttrMapCreate); err != nil {
		return err
	}
	name, err := objName(a.w.data[c.AttrOffset+28 : c.AttrOffset+28+objNameLen])
	if err != nil {
		return blobErr(int64(c.AttrOffset+28), "map_create attr: map_name", err)
	}
	m := Map{
		Index:          -1,
		Name:           name,
		Type:           a.u32(c, 0),
		KeySize:        a.u32(c, 4),
		ValueSize:      a.u32(c, 8),
		MaxEntries:     a.u32(c, 12),
		Flags:          a.u32(c, 16),
		BTFKeyTypeID:   a.u32(c, 52),
		BTFValueTypeID: a.u32(c, 56),
		AttrOffset:     c.AttrOffset,
		CreateCall:     k,
		InitialValue:   Range{Offset: -1},
	}
	found := false
	for _, s := range a.retByCall[k] {
		switch {
		case s.stack && s.off == stackInnerMapFD:
			m.InnerTemplate = true
		case !s.stack && s.size == 4 && s.off >= 0 && s.off%4 == 0 && s.off < maxMapSlots*4:
			m.Index = int(s.off / 4)
		default:
			continue
		}
		found = true
		break
	}
	if !found {
		return loaderErr(c.Insn, fmt.Errorf("map %q: its fd is stored neither in an fd_array slot nor as the inner map", name))
	}
	if m.Index >= 0 {
		if o, dup := a.slots[m.Index]; dup {
			return loaderErr(c.Insn, fmt.Errorf("map %q: fd_array slot %d already holds map %q", name, m.Index, l.Maps[o].Name))
		}
		a.slots[m.Index] = len(l.Maps)
	}
	l.Maps = append(l.Maps, m)
	return nil
}

func (a *attrReader) mapUpdate(l *Layout, c Call) error {
	min := minAttrMapUpdateElem
	if c.Cmd == CmdMapFreeze {
		min = minAttrMapFreeze
	}
	if err := a.needSize(c, min); err != nil {
		return err
	}
	slot, err := a.fdSlot(c)
	if err != nil {
		return err
	}
	mi, ok := a.slots[slot]
	if !ok {
		return loaderErr(c.Insn, fmt.Errorf("%v of fd_array slot %d, which no earlier BPF_MAP_CREATE filled", c.Cmd, slot))
	}
	m := &l.Maps[mi]
	if c.Cmd == CmdMapFreeze {
		m.Frozen = true
		return nil
	}
	key, err := a.pointer(c, 8, "key")
	if err != nil {
		return err
	}
	val, err := a.pointer(c, 16, "value")
	if err != nil {
		return err
	}
	if key < 0 || val < 0 || !a.w.blobRange(key, int64(m.KeySize)) {
		return blobErr(int64(c.AttrOffset), "map_update_elem attr", fmt.Errorf("map %q: key or value pointer not set, or key outside the blob", m.Name))
	}
	if val < fdArraySize {
		// Map-in-map slot initialisation: the value is an inner map's fd
		// from the fd_array.
		if !a.w.blobRange(val, 4) {
			return blobErr(int64(c.AttrOffset+16), "map_update_elem attr: value", errors.New("outside the blob"))
		}
		return nil
	}
	if !a.w.blobRange(val, int64(m.ValueSize)) {
		return blobErr(int64(c.AttrOffset+16), "map_update_elem attr: value", fmt.Errorf("map %q: value [%d, +%d) outside the %d-byte blob", m.Name, val, m.ValueSize, len(a.w.data)))
	}
	if m.InitialValue.Offset >= 0 {
		return loaderErr(c.Insn, fmt.Errorf("map %q: second initial value", m.Name))
	}
	m.InitialValue = Range{Offset: int(val), Size: int(m.ValueSize)}
	return nil
}

// objName decodes a NUL-terminated object name the way the kernel's
// bpf_obj_name_cpy accepts it: [A-Za-z0-9_.], NUL within 16 bytes.
func objName(b []byte) (string, error) {
	n := bytes.IndexByte(b, 0)
	if n < 0 {
		return "", fmt.Errorf("not NUL-terminated within %d bytes", len(b))
	}
	for i, c := range b[:n] {
		if !isIdentByte(c) && c != '.' {
			return "", fmt.Errorf("byte %d (%#02x) not in [A-Za-z0-9_.]", i, c)
		}
	}
	return string(b[:n]), nil
}

func (a *attrReader) progLoad(l *Layout, k int, c Call) error {
	if err := a.needSize(c, minAttrProgLoad); err != nil {
		return err
	}
	data, at := a.w.data, int64(c.AttrOffset)
	name, err := objName(data[c.AttrOffset+48 : c.AttrOffset+48+objNameLen])
	if err != nil {
		return blobErr(at+48, "prog_load attr: prog_name", err)
	}
	p := Program{
		Index:              len(l.Programs),
		Name:               name,
		Type:               a.u32(c, 0),
		InsnCount:          int(a.u32(c, 4)),
		Flags:              a.u32(c, 44),
		ExpectedAttachType: a.u32(c, 68),
		AttachBTFID:        a.u32(c, 108),
		AttrOffset:         c.AttrOffset,
		LoadCall:           k,
	}
	field := func(f string) string { return fmt.Sprintf("program %q: prog_load attr: %s", name, f) }

	insns, err := a.pointer(c, 8, "insns")
	if err != nil {
		return err
	}
	if p.InsnCount == 0 || insns < 0 || !a.w.blobRange(insns, int64(p.InsnCount)*insnSize) {
		return blobErr(at+4, field("insns"), fmt.Errorf("%d instructions at %d: not set or outside the %d-byte blob", p.InsnCount, insns, len(data)))
	}
	p.InsnOffset = int(insns)
	p.Insns = data[insns : insns+int64(p.InsnCount)*insnSize]
	p.Digest = sha256Of(p.Insns)

	lic, err := a.pointer(c, 16, "license")
	if err != nil {
		return err
	}
	if lic < 0 || lic >= int64(len(data)) {
		return blobErr(at+16, field("license"), errors.New("not set or outside the blob"))
	}
	end := data[lic:min(int64(len(data)), lic+maxLicense)]
	n := bytes.IndexByte(end, 0)
	if n < 0 {
		return blobErr(lic, field("license"), fmt.Errorf("not NUL-terminated within %d bytes", maxLicense))
	}
	p.License, p.LicenseOffset = string(end[:n]), int(lic)

	for _, r := range []struct {
		dst            *Range
		name           string
		ptr, cnt, recz int
	}{
		{&p.FuncInfo, "func_info", 80, 88, 76},
		{&p.LineInfo, "line_info", 96, 104, 92},
		{&p.CoreRelos, "core_relos", 128, 116, 136},
	} {
		ptr, err := a.pointer(c, r.ptr, r.name)
		if err != nil {
			return err
		}
		cnt, rec := int64(a.u32(c, r.cnt)), int64(a.u32(c, r.recz))
		*r.dst = Range{Offset: int(ptr)}
		if cnt == 0 {
			continue
		}
		if ptr < 0 || cnt > int64(len(data)) || rec > int64(len(data)) || !a.w.blobRange(ptr, cnt*rec) {
			return blobErr(at+int64(r.cnt), field(r.name), fmt.Errorf("%d records of %d bytes at %d: not set or outside the blob", cnt, rec, ptr))
		}
		r.dst.Size = int(cnt * rec)
	}
	fdArray, err := a.pointer(c, 120, "fd_array")
	if err != nil {
		return err
	}
	p.FdArrayOffset = int(fdArray)

	if p.RelocSlots, err = a.relocSlots(p, c); err != nil {
		return err
	}
	l.Programs = append(l.Programs, p)
	return nil
}

// relocSlots lists the instructions of an embedded program that are
// rewritten before the kernel runs it.
func (a *attrReader) relocSlots(p Program, c Call) ([]RelocSlot, error) {
	code, err := decodeInsns(a.w.scratch.prog, p.Insns, "blob")
	if err == nil {
		a.w.scratch.prog = code[:0]
	}
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Field = fmt.Sprintf("program %q at offset %d", p.Name, p.InsnOffset)
		}
		return nil, err
	}
	var slots []RelocSlot
	for i, in := range code {
		switch {
		case in.wide2:
		case in.op.IsDWordLoad() && in.src >= asm.PseudoMapFD && in.src <= pseudoMapIdxValue:
			slots = append(slots, RelocSlot{Insn: i, Width: 2, Kind: SlotKind(in.src), Imm: in.imm, Offset: uint32(in.second)})
		case in.isCall() && in.src == asm.PseudoCall:
			slots = append(slots, RelocSlot{Insn: i, Width: 1, Kind: SlotCall, Imm: in.imm})
		case in.isCall() && in.src == asm.PseudoKfuncCall:
			slots = append(slots, RelocSlot{Insn: i, Width: 1, Kind: SlotKfuncCall, Imm: in.imm})
		}
	}
	// Loader stores into the instruction range (extern relocations).
	lo, hi := int64(p.InsnOffset), int64(p.InsnOffset+len(p.Insns))
	// Writes are at most 8 bytes, so those touching [lo, hi) start in
	// [lo-7, hi).
	first := sort.Search(len(a.sorted), func(j int) bool { return a.w.writes[a.sorted[j]].off >= lo-7 })
	for _, wi := range a.sorted[first:] {
		wr := a.w.writes[wi]
		if wr.off >= hi {
			break
		}
		if wr.insn >= c.Insn || wr.off+int64(wr.size) <= lo {
			continue
		}
		for j := int((max(wr.off, lo) - lo) / insnSize); j <= int((min(wr.off+int64(wr.size), hi)-1-lo)/insnSize); j++ {
			slots = markPatched(slots, code, j)
		}
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].Insn < slots[j].Insn })
	return slots, nil
}

func markPatched(slots []RelocSlot, code []rawInsn, j int) []RelocSlot {
	for i := range slots {
		if slots[i].Contains(j) {
			slots[i].LoaderPatched = true
			return slots
		}
	}
	s := RelocSlot{Insn: j, Width: 1, Kind: SlotPatched, LoaderPatched: true}
	switch {
	case code[j].wide2:
		s.Insn, s.Width = j-1, 2
	case code[j].op.IsDWordLoad():
		s.Width = 2
	}
	return append(slots, s)
}

// overrides classifies every context value the loader moves into the blob.
func (w *loaderWalk) overrides(l *Layout) {
	// The attr images of a libbpf loader do not overlap: a write belongs
	// to the call with the highest attr offset at or below it, if that
	// image covers it.
	byAttr := make([]int, len(w.calls))
	for k := range byAttr {
		byAttr[k] = k
	}
	sort.SliceStable(byAttr, func(i, j int) bool { return w.calls[byAttr[i]].AttrOffset < w.calls[byAttr[j]].AttrOffset })
	owner := func(off int64) (Call, int, bool) {
		j := sort.Search(len(byAttr), func(j int) bool { return int64(w.calls[byAttr[j]].AttrOffset) > off })
		if j == 0 {
			return Call{}, -1, false
		}
		k := byAttr[j-1]
		c := w.calls[k]
		return c, k, off < int64(c.AttrOffset+c.AttrSize)
	}
	mapByCall := make(map[int]int, len(l.Maps))
	for _, m := range l.Maps {
		mapByCall[m.CreateCall] = m.Index
	}
	mapOf := func(call int) int {
		if i, ok := mapByCall[call]; ok {
			return i
		}
		return -1
	}
	for _, wr := range w.writes {
		if wr.src.kind != vCtxVal {
			continue
		}
		o := Override{Insn: wr.insn, Blob: Range{Offset: int(wr.off), Size: wr.size}, CtxOffset: int(wr.src.n), Map: -1}
		if c, k, ok := owner(wr.off); ok {
			f := int(wr.off) - c.AttrOffset
			switch {
			case c.Cmd == CmdBTFLoad && (f == 8 || f == 20 || f == 24),
				c.Cmd == CmdProgLoad && (f == 24 || f == 28 || f == 32):
				o.Kind = OverrideLog
			case c.Cmd == CmdMapCreate && f == 12:
				o.Kind, o.Map = OverrideMaxEntries, mapOf(k)
			}
		}
		l.Overrides = append(l.Overrides, o)
	}
	var inits []Map // maps with an initial value, by its offset
	for _, m := range l.Maps {
		if m.InitialValue.Offset >= 0 {
			inits = append(inits, m)
		}
	}
	sort.SliceStable(inits, func(i, j int) bool { return inits[i].InitialValue.Offset < inits[j].InitialValue.Offset })
	for _, o := range w.copies {
		j := sort.Search(len(inits), func(j int) bool { return inits[j].InitialValue.Offset > o.Blob.Offset })
		if j > 0 {
			if iv := inits[j-1].InitialValue; o.Blob.Offset+o.Blob.Size <= iv.Offset+iv.Size {
				o.Kind, o.Map = OverrideInitialValue, inits[j-1].Index
			}
		}
		l.Overrides = append(l.Overrides, o)
	}
	sort.SliceStable(l.Overrides, func(i, j int) bool { return l.Overrides[i].Insn < l.Overrides[j].Insn })
	for _, o := range l.Overrides {
		if o.Kind != OverrideLog {
			l.HostOverrides = true
		}
	}
}
