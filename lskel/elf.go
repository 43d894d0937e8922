package lskel

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/cilium/ebpf"
)

// ELFComparison is the result of CompareELF: how the programs a loader
// carries relate to the BPF object (.bpf.o) they were generated from.
type ELFComparison struct {
	Programs []ProgramComparison
	// UnmatchedELF names ELF programs that no blob program matched (for
	// example programs with autoload disabled).
	UnmatchedELF []string
}

// Matched reports whether every blob program found its ELF program and
// differs from it only inside relocation slots.
func (c *ELFComparison) Matched() bool {
	for _, p := range c.Programs {
		if !p.Matched || !p.OnlyRelocationSlots {
			return false
		}
	}
	return len(c.Programs) > 0
}

// ProgramComparison compares one blob program with its ELF program.
type ProgramComparison struct {
	Program  string // blob program name (≤ 15 bytes)
	Index    int    // Program.Index
	Matched  bool   // an ELF program was found for it
	Section  string // ELF section, e.g. "raw_tp/sys_enter"
	Function string // ELF function name (full length)

	ELFType       uint32 // program type cilium/ebpf derives from the section
	ELFAttachType uint32
	TypeMatches   bool // ELFType and ELFAttachType equal the blob's

	// ELFInsnCount counts the ELF program's instruction slots, with the
	// subprograms it calls appended as libbpf does.
	ELFInsnCount int
	// ELFDigest is SHA-256 of the function's raw bytes in its ELF section
	// (before any relocation); zero when the symbol cannot be read.
	ELFDigest [32]byte

	// Differences are the instruction indices where the blob bytes and the
	// ELF bytes differ (indices past the shorter side count as different).
	Differences []int
	// DiffSlots are the blob relocation slots (by first instruction index)
	// that contain at least one difference.
	DiffSlots []int
	// OnlyRelocationSlots: every difference lies inside a blob relocation
	// slot, and both sides have the same length.
	OnlyRelocationSlots bool
	// ELFRelocations are the instruction indices that carry an ELF
	// relocation (map, data or call references).
	ELFRelocations []int
	// SlotsAgree: the blob's relocation slots start exactly at the ELF
	// relocation indices.
	SlotsAgree bool
}

// CompareELF matches every program of the layout with a program of the BPF
// object obj (by name; the blob keeps at most 15 bytes of it) and compares
// their instructions. It reads the object with cilium/ebpf, which appends
// called subprograms as libbpf does, and debug/elf for the raw bytes.
func CompareELF(l *Layout, obj io.ReaderAt) (*ELFComparison, error) {
	if l == nil {
		return nil, errors.New("elf/compare: nil layout")
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(obj)
	if err != nil {
		return nil, &FormatError{Part: "elf", Err: err}
	}
	raw, err := rawFunctions(obj)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(spec.Programs))
	for n := range spec.Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	used := map[string]bool{}
	out := &ELFComparison{}
	for _, p := range l.Programs {
		pc := ProgramComparison{Program: p.Name, Index: p.Index}
		var match *ebpf.ProgramSpec
		for _, n := range names {
			if n == p.Name || len(p.Name) == objNameLen-1 && len(n) > len(p.Name) && n[:len(p.Name)] == p.Name {
				if match != nil {
					return nil, &FormatError{Part: "elf", Field: p.Name, Err: fmt.Errorf("program name matches both %q and %q", match.Name, n)}
				}
				match = spec.Programs[n]
			}
		}
		if match != nil {
			used[match.Name] = true
			if err := compareProgram(&pc, p, match, raw); err != nil {
				return nil, err
			}
		}
		out.Programs = append(out.Programs, pc)
	}
	for _, n := range names {
		if !used[n] {
			out.UnmatchedELF = append(out.UnmatchedELF, n)
		}
	}
	return out, nil
}

func compareProgram(pc *ProgramComparison, p Program, s *ebpf.ProgramSpec, raw map[string][]byte) error {
	pc.Matched = true
	pc.Section, pc.Function = s.SectionName, s.Name
	pc.ELFType, pc.ELFAttachType = uint32(s.Type), uint32(s.AttachType)
	pc.TypeMatches = pc.ELFType == p.Type && pc.ELFAttachType == p.ExpectedAttachType

	// The ELF side is the function's raw bytes as compiled, followed by
	// the subprograms cilium/ebpf appends (re-encoded; their relocation
	// sites carry cilium's values, which differ from the blob's anyway).
	var buf bytes.Buffer
	if err := s.Instructions.Marshal(&buf, binary.LittleEndian); err != nil {
		return &FormatError{Part: "elf", Field: s.Name, Err: err}
	}
	elfBytes := buf.Bytes()
	if b, ok := raw[s.SectionName+"\x00"+s.Name]; ok && len(b) <= len(elfBytes) && len(b)%insnSize == 0 {
		pc.ELFDigest = sha256.Sum256(b)
		elfBytes = append(append([]byte{}, b...), elfBytes[len(b):]...)
	}
	pc.ELFInsnCount = len(elfBytes) / insnSize
	iter := s.Instructions.Iterate()
	for iter.Next() {
		ins := iter.Ins
		if ins.Reference() != "" || ins.IsFunctionCall() || ins.IsKfuncCall() || ins.IsLoadFromMap() || ins.IsFunctionReference() {
			pc.ELFRelocations = append(pc.ELFRelocations, int(iter.Offset))
		}
	}

	n := max(len(p.Insns), len(elfBytes)) / insnSize
	for i := 0; i < n; i++ {
		lo, hi := i*insnSize, (i+1)*insnSize
		if hi > len(p.Insns) || hi > len(elfBytes) || !bytes.Equal(p.Insns[lo:hi], elfBytes[lo:hi]) {
			pc.Differences = append(pc.Differences, i)
		}
	}
	pc.OnlyRelocationSlots = len(p.Insns) == len(elfBytes)
	for _, d := range pc.Differences {
		in := false
		for _, s := range p.RelocSlots {
			if s.Contains(d) {
				in = true
				if k := len(pc.DiffSlots); k == 0 || pc.DiffSlots[k-1] != s.Insn {
					pc.DiffSlots = append(pc.DiffSlots, s.Insn)
				}
			}
		}
		if !in {
			pc.OnlyRelocationSlots = false
		}
	}
	pc.SlotsAgree = len(p.RelocSlots) == len(pc.ELFRelocations)
	for i := 0; pc.SlotsAgree && i < len(p.RelocSlots); i++ {
		pc.SlotsAgree = p.RelocSlots[i].Insn == pc.ELFRelocations[i]
	}
	return nil
}

// maxELFFunctions bounds the symbols rawFunctions collects.
const maxELFFunctions = 4096

// rawFunctions returns the raw bytes of every function symbol, keyed by
// section name + "\x00" + symbol name.
func rawFunctions(obj io.ReaderAt) (map[string][]byte, error) {
	f, err := elf.NewFile(obj)
	if err != nil {
		return nil, &FormatError{Part: "elf", Err: err}
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, &FormatError{Part: "elf", Field: "symbols", Err: err}
	}
	out := map[string][]byte{}
	data := map[elf.SectionIndex][]byte{}
	for _, sym := range syms {
		if elf.ST_TYPE(sym.Info) != elf.STT_FUNC || int(sym.Section) <= 0 || int(sym.Section) >= len(f.Sections) {
			continue
		}
		if len(out) >= maxELFFunctions {
			return nil, &FormatError{Part: "elf", Field: "symbols", Err: fmt.Errorf("more than %d functions: %w", maxELFFunctions, ErrTooLarge)}
		}
		sec := f.Sections[sym.Section]
		b, ok := data[sym.Section]
		if !ok {
			if b, err = sec.Data(); err != nil {
				return nil, &FormatError{Part: "elf", Field: sec.Name, Err: err}
			}
			data[sym.Section] = b
		}
		if sym.Value > uint64(len(b)) || sym.Size > uint64(len(b))-sym.Value {
			return nil, &FormatError{Part: "elf", Field: sym.Name, Err: fmt.Errorf("symbol [%d, +%d) outside section %s", sym.Value, sym.Size, sec.Name)}
		}
		out[sec.Name+"\x00"+sym.Name] = b[sym.Value : sym.Value+sym.Size]
	}
	return out, nil
}
