package lskel

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Expected ELF comparison per program (lskel-blob §4.5): the raw ELF
// function's SHA-256, the instruction indices where blob and ELF differ, and
// the relocation slots (which coincide with the ELF relocation offsets).
var wantELF = map[string][]struct {
	section, function, digest string
	differences, slots        []int
}{
	"counter": {{"raw_tp/sys_enter", "count_sys_enter", "5fbc5738ea8d50f6a8c45347cbf9e291b43d2217442d0123126eca30a68a72a2", []int{4, 5, 11, 18}, []int{4, 11, 18}}},
	"pair": {
		{"raw_tp/sys_enter", "pair_enter", "91a6c0816a71cf90232a6715e8d205859b2c9dc3a3562c2c2f21f57a3f9200fa", []int{8, 17, 22}, []int{8, 17, 22}},
		{"raw_tp/sys_exit", "pair_exit", "16729eaeaa77254f4fdde3033299794d00df5c091773e94d1c820f07959b15f4", []int{8, 17, 22}, []int{8, 17, 22}},
	},
	"rocfg": {{"socket", "rocfg_filter", "d6f533e01ff4f6f32807ff012b508a0e64c75b36e14c05ce61800839dc3054ba", []int{2, 3, 6, 7, 14, 25, 32}, []int{2, 6, 14, 25, 32}}},
}

func compareFixture(tb testing.TB, l *Layout, name string) *ELFComparison {
	tb.Helper()
	c, err := CompareELF(l, bytes.NewReader(readLskel(tb, "obj/"+name+".bpf.o")))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestCompareELFFixtures(t *testing.T) {
	for _, n := range lskelNames {
		for _, file := range []string{n + ".lskel.h", n + ".signed.lskel.h"} {
			t.Run(file, func(t *testing.T) {
				_, l := analyzeFixture(t, file)
				c := compareFixture(t, l, n)
				if !c.Matched() || len(c.UnmatchedELF) != 0 {
					t.Errorf("matched %v, unmatched ELF programs %v", c.Matched(), c.UnmatchedELF)
				}
				want := wantELF[n]
				if len(c.Programs) != len(want) {
					t.Fatalf("%d programs compared, want %d", len(c.Programs), len(want))
				}
				for i, w := range want {
					p := c.Programs[i]
					if p.Section != w.section || p.Function != w.function || hex.EncodeToString(p.ELFDigest[:]) != w.digest {
						t.Errorf("program %d: section %q function %q digest %x", i, p.Section, p.Function, p.ELFDigest)
					}
					if !p.TypeMatches || p.ELFInsnCount != l.Programs[i].InsnCount {
						t.Errorf("program %d: type matches %v, ELF insns %d", i, p.TypeMatches, p.ELFInsnCount)
					}
					if diff := cmp.Diff(w.differences, p.Differences); diff != "" {
						t.Errorf("program %d differences (-want +got):\n%s", i, diff)
					}
					if diff := cmp.Diff(w.slots, p.DiffSlots); diff != "" {
						t.Errorf("program %d slots with differences (-want +got):\n%s", i, diff)
					}
					if diff := cmp.Diff(w.slots, p.ELFRelocations); diff != "" {
						t.Errorf("program %d ELF relocations (-want +got):\n%s", i, diff)
					}
					if !p.OnlyRelocationSlots || !p.SlotsAgree {
						t.Errorf("program %d: only relocation slots %v, slots agree %v", i, p.OnlyRelocationSlots, p.SlotsAgree)
					}
				}
			})
		}
	}
}

// TestCompareELFDetectsChange flips one byte of an embedded program: outside
// a relocation slot it is reported; inside one it is tolerated.
func TestCompareELFDetectsChange(t *testing.T) {
	a := parseHeaderFixture(t, "counter.signed.lskel.h")
	const insnOff = 2656 // count_sys_enter in the blob
	cases := []struct {
		name       string
		insn, byte int
		onlySlots  bool
	}{
		{"outside a slot", 7, 4, false},
		{"first instruction", 0, 1, false},
		{"inside a slot", 5, 4, true}, // second imm of the ld_imm64 at 4
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := append([]byte{}, a.Data...)
			data[insnOff+8*tc.insn+tc.byte] ^= 0x01
			l, err := Analyze(a.Insns, data)
			if err != nil {
				t.Fatal(err)
			}
			p := compareFixture(t, l, "counter").Programs[0]
			found := false
			for _, d := range p.Differences {
				found = found || d == tc.insn
			}
			if !found || p.OnlyRelocationSlots != tc.onlySlots {
				t.Errorf("differences %v, only relocation slots %v; want %d reported, only slots %v", p.Differences, p.OnlyRelocationSlots, tc.insn, tc.onlySlots)
			}
		})
	}
}

func TestCompareELFWrongObject(t *testing.T) {
	_, l := analyzeFixture(t, "counter.signed.lskel.h")
	c := compareFixture(t, l, "pair")
	if c.Matched() || c.Programs[0].Matched || len(c.UnmatchedELF) != 2 {
		t.Errorf("counter against pair.bpf.o: matched %v, unmatched %v", c.Matched(), c.UnmatchedELF)
	}
	if _, err := CompareELF(l, bytes.NewReader([]byte("not an ELF file"))); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage object: error %v, want ErrMalformed", err)
	}
}
