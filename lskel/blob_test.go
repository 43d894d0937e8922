package lskel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// Expected results, from the research notes on the loader blob ("lskel-blob"
// §4.1, §4.3, §4.4, §5.1), which were checked against libbpf regeneration.
type wantCall struct {
	cmd          Cmd
	attr         int
	unsigned, sg int // instruction index in the unsigned and signed loader
}

type wantProg struct {
	name                   string
	typ, attach            uint32
	count, insnOff, licOff int
	attr                   int
	digest                 string
}

type wantMap struct {
	index                      int
	name                       string
	typ, key, value, max, flag uint32
	btfKey, btfValue           uint32
	attr                       int
	init                       Range
	initDigest                 string // SHA-256 of the initial value bytes
	frozen                     bool
}

type wantLayout struct {
	dataSize, btfSize int
	prologue          int
	hashInsns         []int
	calls             []wantCall
	progs             []wantProg
	maps              []wantMap
	unsignedCtxReads  []int
}

var wantLayouts = map[string]wantLayout{
	"counter": {
		dataSize: 3240, btfSize: 1125, prologue: 30, hashInsns: []int{38, 45, 52, 59},
		calls: []wantCall{
			{CmdBTFLoad, 2408, 51, 84}, {CmdMapCreate, 2440, 68, 96}, {CmdMapCreate, 2512, 87, 110},
			{CmdMapUpdateElem, 2608, 123, 136}, {CmdProgLoad, 3096, 176, 189},
		},
		progs: []wantProg{{"count_sys_enter", 17, 0, 26, 2656, 2640, 3096, "5988fc88e006b6316d2553e8a7f34eaf77a19c02ab52349182477f1fc66a8237"}},
		maps: []wantMap{
			{0, "per_syscall", 2, 4, 8, 512, 0, 8, 11, 2440, Range{-1, 0}, "", false},
			{1, "counter_.bss", 2, 4, 12, 1, 0x400, 0, 25, 2512, Range{2584, 12}, "15ec7bf0b50732b49f8228e07d24365338f9e3ab994b00af08e5a3bffe55fd8b", false},
		},
		unsignedCtxReads: []int{4, 8, 12, 16, 28, 44, 48},
	},
	"pair": {
		dataSize: 3744, btfSize: 1109, prologue: 27, hashInsns: []int{35, 42, 49, 56},
		calls: []wantCall{
			{CmdBTFLoad, 2392, 48, 81}, {CmdMapCreate, 2424, 65, 93}, {CmdProgLoad, 2976, 121, 149}, {CmdProgLoad, 3600, 175, 203},
		},
		progs: []wantProg{
			{"pair_enter", 17, 0, 31, 2512, 2496, 2976, "ed11fbf007800b969bfed58251e54bdd3ebc496bedd8f003a12c4b44827f76ed"},
			{"pair_exit", 17, 0, 31, 3136, 3120, 3600, "5daf9f0e05c1aa9cc5880bafb7dcdea2977b49994adf51f5fe45516873831ba1"},
		},
		maps:             []wantMap{{0, "flows", 1, 4, 16, 1024, 0, 8, 11, 2424, Range{-1, 0}, "", false}},
		unsignedCtxReads: []int{8, 12, 16, 28},
	},
	"rocfg": {
		dataSize: 4256, btfSize: 1947, prologue: 30, hashInsns: []int{38, 45, 52, 59},
		calls: []wantCall{
			{CmdBTFLoad, 3232, 51, 84}, {CmdMapCreate, 3264, 68, 96}, {CmdMapCreate, 3336, 87, 110},
			{CmdMapUpdateElem, 3440, 123, 136}, {CmdMapFreeze, 3472, 136, 149}, {CmdProgLoad, 4112, 189, 202},
		},
		progs: []wantProg{{"rocfg_filter", 1, 0, 38, 3496, 3480, 4112, "07c3cab624a9aeee40c5c8911d055878e7d818be8702e5006b1a9b02563a9ed3"}},
		maps: []wantMap{
			{0, "verdicts", 2, 4, 8, 2, 0, 6, 9, 3264, Range{-1, 0}, "", false},
			{1, "rocfg_ls.rodata", 2, 4, 24, 1, 0x480, 0, 37, 3336, Range{3408, 24}, "0126a277bf3bd7fc0aaefec926554bcf91ef6f25398fec76900d7d8d19af7511", true},
		},
		unsignedCtxReads: []int{4, 8, 12, 16, 28, 44, 48},
	},
}

func analyzeFixture(tb testing.TB, file string) (*Artifact, *Layout) {
	tb.Helper()
	a := parseHeaderFixture(tb, file)
	l, err := Analyze(a.Insns, a.Data)
	if err != nil {
		tb.Fatalf("%s: %v", file, err)
	}
	return a, l
}

func ctxOffsets(fs []CtxField) []int {
	var out []int
	for _, f := range fs {
		out = append(out, f.Offset)
	}
	return out
}

func round8(n int) int { return (n + 7) &^ 7 }

// TestAnalyzeFixtures checks calls, programs, maps and the hash check found
// in every fixture against the research notes.
func TestAnalyzeFixtures(t *testing.T) {
	for _, n := range lskelNames {
		want := wantLayouts[n]
		for _, signed := range []bool{false, true} {
			file := n + ".lskel.h"
			if signed {
				file = n + ".signed.lskel.h"
			}
			t.Run(file, func(t *testing.T) {
				a, l := analyzeFixture(t, file)
				checkCalls(t, l, want, signed)
				checkPrograms(t, l, want)
				checkMaps(t, a, l, want)
				if l.BTF != (Range{1280, want.btfSize}) {
					t.Errorf("BTF %+v, want {1280 %d}", l.BTF, want.btfSize)
				}
				if !bytes.Equal(a.Data[1280:1282], []byte{0x9f, 0xeb}) {
					t.Errorf("no BTF magic at offset 1280")
				}
				if len(l.UntrackedStores) != 0 {
					t.Errorf("untracked stores at %v", l.UntrackedStores)
				}
				if !cmp.Equal(l.UsedMaps, []int{0}) {
					t.Errorf("used maps %v, want [0] (the data map only)", l.UsedMaps)
				}
				checkHashCheck(t, a, l, want, signed)
			})
		}
	}
}

func checkCalls(t *testing.T, l *Layout, want wantLayout, signed bool) {
	t.Helper()
	var got, exp []string
	for _, c := range l.Calls {
		got = append(got, fmt.Sprintf("%v@%d insn %d size %d", c.Cmd, c.AttrOffset, c.Insn, c.AttrSize))
	}
	sizes := map[Cmd]int{CmdBTFLoad: 28, CmdMapCreate: 72, CmdMapUpdateElem: 32, CmdMapFreeze: 4, CmdProgLoad: 140}
	for _, c := range want.calls {
		insn := c.unsigned
		if signed {
			insn = c.sg
		}
		exp = append(exp, fmt.Sprintf("%v@%d insn %d size %d", c.cmd, c.attr, insn, sizes[c.cmd]))
	}
	if diff := cmp.Diff(exp, got); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func checkPrograms(t *testing.T, l *Layout, want wantLayout) {
	t.Helper()
	if len(l.Programs) != len(want.progs) {
		t.Fatalf("%d programs, want %d", len(l.Programs), len(want.progs))
	}
	for i, w := range want.progs {
		p := l.Programs[i]
		got := wantProg{p.Name, p.Type, p.ExpectedAttachType, p.InsnCount, p.InsnOffset, p.LicenseOffset, p.AttrOffset, hex.EncodeToString(p.Digest[:])}
		if diff := cmp.Diff(w, got, cmp.AllowUnexported(wantProg{})); diff != "" {
			t.Errorf("program %d (-want +got):\n%s", i, diff)
		}
		if p.Index != i || p.License != "Dual BSD/GPL" || p.Flags != 0 || p.AttachBTFID != 0 || p.FdArrayOffset != 0 {
			t.Errorf("program %d: index %d license %q flags %d attach_btf_id %d fd_array %d", i, p.Index, p.License, p.Flags, p.AttachBTFID, p.FdArrayOffset)
		}
		if sha256.Sum256(p.Insns) != p.Digest || len(p.Insns) != 8*p.InsnCount {
			t.Errorf("program %d: Insns do not match the digest or count", i)
		}
		// add_data tiling: license, insns, func_info, line_info, core_relos, attr.
		if p.LicenseOffset+round8(len(p.License)+1) != p.InsnOffset ||
			p.InsnOffset+8*p.InsnCount != p.FuncInfo.Offset ||
			p.FuncInfo.Offset+p.FuncInfo.Size != p.LineInfo.Offset ||
			p.LineInfo.Offset+p.LineInfo.Size != p.CoreRelos.Offset ||
			p.CoreRelos.Offset+p.CoreRelos.Size != p.AttrOffset {
			t.Errorf("program %d: items do not tile: %+v", i, p)
		}
		if p.FuncInfo.Size != 8 || p.CoreRelos.Size != 0 {
			t.Errorf("program %d: func_info %+v core_relos %+v", i, p.FuncInfo, p.CoreRelos)
		}
	}
}

func checkMaps(t *testing.T, a *Artifact, l *Layout, want wantLayout) {
	t.Helper()
	var got []wantMap
	for _, m := range l.Maps {
		w := wantMap{m.Index, m.Name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags, m.BTFKeyTypeID, m.BTFValueTypeID, m.AttrOffset, m.InitialValue, "", m.Frozen}
		if m.InitialValue.Offset >= 0 {
			iv := a.Data[m.InitialValue.Offset : m.InitialValue.Offset+m.InitialValue.Size]
			w.initDigest = sha256Hex(iv)
			// The header's data[] array carries the same bytes.
			if len(a.Globals) != 1 || !bytes.Equal(a.Globals[0].Data, iv) {
				t.Errorf("map %s: initial value differs from the header's data array", m.Name)
			}
		}
		if m.InnerTemplate {
			t.Errorf("map %s: inner template in a fixture", m.Name)
		}
		got = append(got, w)
	}
	if diff := cmp.Diff(want.maps, got, cmp.AllowUnexported(wantMap{})); diff != "" {
		t.Errorf("maps (-want +got):\n%s", diff)
	}
}

func checkHashCheck(t *testing.T, a *Artifact, l *Layout, want wantLayout, signed bool) {
	t.Helper()
	if l.DataSHA256 != sha256.Sum256(a.Data) {
		t.Errorf("DataSHA256 is not SHA-256(opts_data)")
	}
	if !signed {
		if l.Generation != GenerationUnchecked || l.EmbeddedDataHash != nil || l.PrologueInsn != -1 || l.CheckFailTarget != -1 || !l.HostOverrides {
			t.Errorf("unsigned: generation %v hash %x prologue %d target %d overrides %v", l.Generation, l.EmbeddedDataHash, l.PrologueInsn, l.CheckFailTarget, l.HostOverrides)
		}
		if diff := cmp.Diff(want.unsignedCtxReads, ctxOffsets(l.CtxReads)); diff != "" {
			t.Errorf("unsigned ctx reads (-want +got):\n%s", diff)
		}
		kinds := map[OverrideKind]int{}
		for _, o := range l.Overrides {
			kinds[o.Kind]++
		}
		if kinds[OverrideMaxEntries] != len(want.maps) || kinds[OverrideInitialValue] != len(want.maps)-1 || kinds[OverrideOther] != 0 {
			t.Errorf("unsigned overrides by kind %v", kinds)
		}
		return
	}
	if l.Generation != GenerationLoaderCheck || l.Generation.String() != "loader-check" {
		t.Errorf("generation %v, want loader-check", l.Generation)
	}
	if !bytes.Equal(l.EmbeddedDataHash, l.DataSHA256[:]) || !l.DataHashMatches() {
		t.Errorf("embedded data hash %x, want SHA-256(opts_data) %x", l.EmbeddedDataHash, l.DataSHA256)
	}
	if l.PrologueInsn != want.prologue || !cmp.Equal(l.HashInsns, want.hashInsns) {
		t.Errorf("prologue at %d hash insns %v, want %d %v", l.PrologueInsn, l.HashInsns, want.prologue, want.hashInsns)
	}
	// The ja at insn 6 jumps over the cleanup block straight to the prologue.
	if ja := a.Insns[6*8:]; ja[0] != 0x05 || 7+int(int16(binary.LittleEndian.Uint16(ja[2:]))) != want.prologue {
		t.Errorf("insn 6 does not jump to the prologue")
	}
	if !l.ExclusivityCheck || l.CheckFailTarget != 7 || !l.CheckPrecedesCalls || l.HostOverrides {
		t.Errorf("exclusivity %v target %d first %v overrides %v", l.ExclusivityCheck, l.CheckFailTarget, l.CheckPrecedesCalls, l.HostOverrides)
	}
	if diff := cmp.Diff([]int{8, 12, 16}, ctxOffsets(l.CtxReads)); diff != "" {
		t.Errorf("signed ctx reads (-want +got):\n%s", diff)
	}
}

// kernelCheckLoader builds the loader libbpf debb5e82 generates, in two
// independent ways (lskel-blob §5.4 and §7): (a) the signed fixture loader
// without its 33-instruction hash prologue; (b) the unsigned fixture loader
// without its ctx override snippets (5 instructions per map for
// max_entries, 10 per global-data map for initial_value).
func kernelCheckLoader(tb testing.TB, name string) (fromSigned, fromUnsigned []byte) {
	tb.Helper()
	fromSigned = testutil.WithoutHashPrologue(tb, parseHeaderFixture(tb, name+".signed.lskel.h").Insns)

	u := parseHeaderFixture(tb, name+".lskel.h").Insns
	dropped := map[int]bool{}
	for i := 0; i+1 < len(u)/8; i++ {
		cur, next := u[i*8:i*8+8], u[(i+1)*8:(i+2)*8]
		switch {
		case cur[0] == 0x61 && cur[1] == 0x60 && bytes.Equal(next, []byte{0x15, 0x00, 0x03, 0, 0, 0, 0, 0}):
			for j := i; j < i+5; j++ { // r0 = ctx.maps[i].max_entries; if r0 == 0 skip; store
				dropped[j] = true
			}
		case cur[0] == 0x79 && cur[1] == 0x63 && bytes.Equal(next, []byte{0x15, 0x03, 0x08, 0, 0, 0, 0, 0}):
			for j := i; j < i+10; j++ { // r3 = ctx.maps[i].initial_value; if r3 == 0 skip; copy
				dropped[j] = true
			}
		}
	}
	fromUnsigned = testutil.RemoveInsns(tb, u, func(i int) bool { return dropped[i] })
	return fromSigned, fromUnsigned
}

// TestAnalyzeKernelCheckGeneration: the debb5e82-shaped loader (no hash
// prologue, no host overrides) is classified as kernel-check and still
// yields every program and map.
func TestAnalyzeKernelCheckGeneration(t *testing.T) {
	wantLen := map[string]int{"counter": 176, "pair": 188, "rocfg": 189}
	for _, n := range lskelNames {
		t.Run(n, func(t *testing.T) {
			fromSigned, fromUnsigned := kernelCheckLoader(t, n)
			if !bytes.Equal(fromSigned, fromUnsigned) {
				t.Fatalf("the two constructions differ (%d vs %d insns)", len(fromSigned)/8, len(fromUnsigned)/8)
			}
			if len(fromSigned)/8 != wantLen[n] {
				t.Errorf("%d insns, want %d", len(fromSigned)/8, wantLen[n])
			}
			a, ref := analyzeFixture(t, n+".signed.lskel.h")
			l, err := Analyze(fromSigned, a.Data)
			if err != nil {
				t.Fatal(err)
			}
			if l.Generation != GenerationKernelCheck || l.EmbeddedDataHash != nil || l.PrologueInsn != -1 || l.HashInsns != nil || l.HostOverrides {
				t.Errorf("generation %v hash %x prologue %d overrides %v", l.Generation, l.EmbeddedDataHash, l.PrologueInsn, l.HostOverrides)
			}
			ignore := cmpopts.IgnoreFields(Program{}, "LoadCall")
			if diff := cmp.Diff(ref.Programs, l.Programs, ignore); diff != "" {
				t.Errorf("programs differ from the fixture's (-fixture +kernel-check):\n%s", diff)
			}
			if diff := cmp.Diff(ref.Maps, l.Maps); diff != "" {
				t.Errorf("maps differ (-fixture +kernel-check):\n%s", diff)
			}
			if diff := cmp.Diff([]int{8, 12, 16}, ctxOffsets(l.CtxReads)); diff != "" {
				t.Errorf("ctx reads (-want +got):\n%s", diff)
			}
			if !cmp.Equal(l.UsedMaps, []int{0}) {
				t.Errorf("used maps %v, want [0]", l.UsedMaps)
			}
			for i, c := range l.Calls {
				if c.Insn != ref.Calls[i].Insn-33 {
					t.Errorf("call %d at insn %d, want %d", i, c.Insn, ref.Calls[i].Insn-33)
				}
			}
		})
	}
}

// TestAnalyzeOlderSignedGeneration: without the exclusivity block (libbpf
// 56cc32b5..5a5b5b0d, 28-insn prologue) the check is still found.
func TestAnalyzeOlderSignedGeneration(t *testing.T) {
	a := parseHeaderFixture(t, "counter.signed.lskel.h")
	insns := testutil.RemoveInsns(t, a.Insns, func(i int) bool { return i >= 30 && i < 35 })
	l, err := Analyze(insns, a.Data)
	if err != nil {
		t.Fatal(err)
	}
	if l.Generation != GenerationLoaderCheck || l.ExclusivityCheck || l.PrologueInsn != 30 || l.CheckFailTarget != 7 ||
		!bytes.Equal(l.EmbeddedDataHash, l.DataSHA256[:]) || !cmp.Equal(l.HashInsns, []int{33, 40, 47, 54}) {
		t.Errorf("generation %v exclusivity %v prologue %d target %d hash insns %v", l.Generation, l.ExclusivityCheck, l.PrologueInsn, l.CheckFailTarget, l.HashInsns)
	}
}

// TestAnalyzeUsedMaps: a map referenced by file descriptor counts as -1,
// even where the walk does not otherwise follow it (here: after the final
// exit).
func TestAnalyzeUsedMaps(t *testing.T) {
	a := parseHeaderFixture(t, "pair.lskel.h")
	insns := append([]byte{}, a.Insns...)
	insns = append(insns,
		0x18, 0x11, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // r1 = map of fd 7
		0x18, 0x21, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // r1 = map value of fd 9
		0x95, 0, 0, 0, 0, 0, 0, 0)
	l, err := Analyze(insns, a.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(l.UsedMaps, []int{-1, 0}) {
		t.Errorf("used maps %v, want [-1 0]", l.UsedMaps)
	}
}

// TestAnalyzeTamperedData: a changed blob byte outside everything the
// loader reads is not an analysis error; the embedded hash then no longer
// equals the blob's hash.
func TestAnalyzeTamperedData(t *testing.T) {
	a := parseHeaderFixture(t, "rocfg.signed.lskel.h")
	data := append([]byte{}, a.Data...)
	data[3408+8] ^= 0x20 // the .rodata tag string
	l, err := Analyze(a.Insns, data)
	if err != nil {
		t.Fatal(err)
	}
	if l.DataHashMatches() || len(l.EmbeddedDataHash) != 32 {
		t.Error("embedded hash still equals the tampered blob's hash")
	}
}

func patch(b []byte, off int, v ...byte) []byte {
	out := append([]byte{}, b...)
	copy(out[off:], v)
	return out
}

func put32(b []byte, off int, v uint32) []byte {
	return patch(b, off, binary.LittleEndian.AppendUint32(nil, v)...)
}

func TestAnalyzeRejects(t *testing.T) {
	a := parseHeaderFixture(t, "counter.signed.lskel.h")
	ins, data := a.Insns, a.Data
	// Signed counter: the BTF load's command is moved into r1 at insn 80; the
	// prologue's ld_imm64 of the loader map is at insn 30, its third
	// digest load (r2 = map->sha[16..24)) at insn 51.
	cases := []struct {
		name        string
		insns, data []byte
		want        string
		is          error
	}{
		{"no insns", nil, data, "loader: no instructions", ErrMalformed},
		{"odd insns", ins[:len(ins)-3], data, "not a multiple of 8", ErrMalformed},
		{"empty data", ins, nil, "blob: empty data blob", ErrMalformed},
		{"truncated ld_imm64", append(append([]byte{}, ins...), 0x18, 0, 0, 0, 0, 0, 0, 0), data, "insn 209: ld_imm64 without its second slot", ErrMalformed},
		{"bad ld_imm64 second slot", patch(ins, 30*8+8, 0x07), data, "insn 31: second slot of ld_imm64", ErrMalformed},
		{"register out of range", patch(ins, 1, 0x1b), data, "insn 0: register out of range", ErrMalformed},
		{"unknown command", patch(ins, 80*8+4, 99), data, "bpf() command bpf_cmd(99)", ErrUnsupportedLoader},
		{"non-constant command", patch(ins, 80*8, 0xbf, 0x61), data, "bpf() with arguments (ctx+0, blob+2408, constant 28)", ErrUnsupportedLoader},
		{"blob truncated", ins, data[:3200], "insn 163: store of 8 bytes at blob offset 3224 is outside the 3200-byte blob", ErrMalformed},
		{"map index from other map", patch(ins, 77*8+4, 1), data, "ld_imm64 of map index", ErrUnsupportedLoader},
		{"hash chunk missing", patch(ins, 51*8+2, 0x28), data, "data-hash check: digest bytes [16,24) not compared exactly once", ErrMalformed},
		{"huge insn_cnt", ins, put32(data, 3096+4, 0xffffffff), "program \"count_sys_enter\": prog_load attr: insns", ErrMalformed},
		{"license not terminated", ins, patch(data, 2640, bytes.Repeat([]byte("A"), 128)...), "license: not NUL-terminated", ErrMalformed},
		{"prog name not terminated", ins, patch(data, 3096+48, bytes.Repeat([]byte("a"), 16)...), "prog_name: not NUL-terminated within 16 bytes", ErrMalformed},
		{"bad map name", ins, patch(data, 2440+28, '/'), "map_name: byte 0 (0x2f) not in", ErrMalformed},
		{"initial value outside blob", ins, put32(data, 2512+8, 1<<20), "map \"counter_.bss\": value [2584, +1048576) outside", ErrMalformed},
		{"func_info outside blob", ins, put32(data, 3096+88, 1<<20), "func_info: 1048576 records of 8 bytes", ErrMalformed},
		{"btf outside blob", ins, put32(data, 2408+16, 1<<20), "btf [1280, +1048576)", ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Analyze(tc.insns, tc.data)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, tc.is) || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %v containing %q", err, tc.is, tc.want)
			}
		})
	}
}

// BenchmarkAnalyze measures the loader analysis of the signed counter fixture.
func BenchmarkAnalyze(b *testing.B) {
	a := parseHeaderFixture(b, "counter.signed.lskel.h")
	b.SetBytes(int64(len(a.Insns) + len(a.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Analyze(a.Insns, a.Data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCtxShape checks the descriptor counts of the fixtures' loader
// contexts against bpftool's skeletons (ctx.sz = offsetof(skeleton, links):
// counter and rocfg 60 bytes, pair 48).
func TestCtxShape(t *testing.T) {
	for name, want := range map[string][2]int{"counter": {2, 1}, "pair": {1, 2}, "rocfg": {2, 1}} {
		for _, file := range []string{name + ".lskel.h", name + ".signed.lskel.h"} {
			_, l := analyzeFixture(t, file)
			if maps, progs := l.CtxShape(); maps != want[0] || progs != want[1] {
				t.Errorf("%s: %d maps, %d programs; want %d, %d", file, maps, progs, want[0], want[1])
			}
		}
	}
}
