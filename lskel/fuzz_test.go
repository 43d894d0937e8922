package lskel

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseHeader: ParseHeader never panics, and whatever it accepts is a
// valid artifact that round-trips through a bundle.
func FuzzParseHeader(f *testing.F) {
	for _, file := range headerFiles() {
		f.Add(readLskel(f, "headers/"+file))
	}
	f.Add([]byte("struct s { struct bpf_loader_ctx ctx; };\nstatic const char opts_insn[] = \"\\x95\\0\\0\\0\\0\\0\\0\\0\";\nstatic const char opts_data[] = \"\\1\";\n"))
	f.Add([]byte("static const char data[] = \"\\\n\\x01\\0\\3\";\n skel->bss = skel_prep_map_data(data); /* */ // x\n"))
	// An empty global-data array must survive the bundle round trip as nil.
	f.Add([]byte("struct s { struct bpf_loader_ctx ctx; };\nstatic const char data[] = \"\";\nskel->bss = skel_prep_map_data(data);\nstatic const char opts_insn[] = \"\\x95\\0\\0\\0\\0\\0\\0\\0\";\nstatic const char opts_data[] = \"\\1\";\n"))
	// The smallest headers in bpftool's form, unsigned and signed, and
	// small versions of the ways TestHeaderConfusion makes a header submit
	// something else than its arrays (small, so that fuzzing stays fast).
	exit := []byte{0x95, 0, 0, 0, 0, 0, 0, 0}
	unsigned := genHeader(&Artifact{Name: "s", Insns: exit, Data: []byte{1}})
	signed := genHeader(&Artifact{Name: "s", Insns: exit, Data: []byte{1}, Signature: []byte{0x30}, ExclHash: make([]byte, 32)})
	f.Add([]byte(unsigned))
	f.Add([]byte(signed))
	const load = "static inline int\ns__load"
	for _, edit := range []struct{ old, new string }{
		{"\topts.signature = ", "\tstatic const char evil_insn[] = \"\\x95\\0\\0\\0\\0\\0\\0\\0\";\n\topts.signature = "},
		{"opts.insns_sz = sizeof(opts_insn) - 1;\n\topts.insns = (void *)opts_insn;", "opts.insns_sz = sizeof(evil_insn) - 1;\n\topts.insns = (void *)evil_insn;"},
		{"opts.insns_sz = sizeof(opts_insn) - 1;", "opts.insns_sz = sizeof(opts_insn) - 9;"},
		{"opts.data = (void *)opts_data;", "opts.data = (void *)opts_data + 8;"},
		{"opts.signature_sz = sizeof(opts_sig) - 1;", "opts.signature_sz = 0;"},
		{"opts.excl_prog_hash = (void *)opts_excl_hash;", "opts.excl_prog_hash = (void *)opts_sig;"},
		{"opts.data_sz = sizeof(opts_data) - 1;", "opts.data_sz = sizeof(opts_data) - 1 - 4096;"},
		{"\topts.insns = (void *)opts_insn;", "\topts.insns = (void *)opts_insn;\n\topts.insns = (void *)opts_data;"},
		{"\topts.insns = (void *)opts_insn;", "#if 1\n\topts.insns = (void *)opts_data;\n#else\n\topts.insns = (void *)opts_insn;\n#endif"},
		{"\treturn 0;\n}", "\topts.insns = (void *)opts_data;\n\terr = bpf_load_and_run(&opts);\n\treturn 0;\n}"},
		{"(void *)opts_insn;", "(void *)opts_\\\ndata;"},
		{load, "#define opts_insn opts_data\n" + load},
		{load, "#define bpf_load_and_run(o) bpf_load_and_run(o)\n" + load},
		{load, "%:define opts_insn opts_data\n" + load},
		{load, "??=define opts_insn opts_data\n" + load},
		{load, "/*\n*/ #define opts_insn opts_data\n" + load},
		{load, "_Pragma(\"x\")\n" + load},
		{load, "static const char opts_insn[] = \"\";\n" + load},
		{"#endif /* __S_SKEL_H__ */", "#endif\nint x;"},
		{"#ifndef __S_SKEL_H__\n#define __S_SKEL_H__", "#ifndef __cplusplus\n#define __cplusplus"},
	} {
		for _, src := range []string{unsigned, signed} {
			if edited := strings.Replace(src, edit.old, edit.new, 1); edited != src {
				f.Add([]byte(edited))
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		a, err := ParseHeader(src)
		if err != nil {
			return
		}
		b, err := a.MarshalBundle()
		if err != nil {
			t.Fatalf("accepted header does not marshal: %v", err)
		}
		back, err := ParseBundle(b)
		if err != nil {
			t.Fatalf("bundle of an accepted header does not parse: %v", err)
		}
		if diff := cmp.Diff(a, back, ignoreSource); diff != "" {
			t.Fatalf("bundle round trip changed the artifact:\n%s", diff)
		}
	})
}

// FuzzParseBundle: ParseBundle never panics, and every accepted bundle is
// canonical: MarshalBundle(ParseBundle(x)) == x.
func FuzzParseBundle(f *testing.F) {
	for _, file := range headerFiles() {
		b, err := parseHeaderFixture(f, file).MarshalBundle()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, err := fixtureBundleArtifact(f).MarshalBundle()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	small := &Artifact{Name: "s", Insns: make([]byte, 8), Data: []byte{1}, Globals: []GlobalData{{Name: "bss", Data: []byte{2}}}}
	if b, err = small.MarshalBundle(); err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, src []byte) {
		a, err := ParseBundle(src)
		if err != nil {
			return
		}
		out, err := a.MarshalBundle()
		if err != nil {
			t.Fatalf("accepted bundle does not marshal: %v", err)
		}
		if !bytes.Equal(out, src) {
			t.Fatalf("MarshalBundle(ParseBundle(x)) != x (%d vs %d bytes)", len(out), len(src))
		}
	})
}

// FuzzAnalyze: Analyze never panics, and every range it reports lies inside
// the blob with digests that match.
func FuzzAnalyze(f *testing.F) {
	for _, file := range headerFiles() {
		a := parseHeaderFixture(f, file)
		f.Add(a.Insns, a.Data)
	}
	for _, n := range lskelNames {
		k, _ := kernelCheckLoader(f, n)
		f.Add(k, parseHeaderFixture(f, n+".lskel.h").Data)
	}
	f.Fuzz(func(t *testing.T, insns, data []byte) {
		l, err := Analyze(insns, data)
		if err != nil {
			return
		}
		inBlob := func(r Range) bool {
			return r.Offset == -1 && r.Size == 0 || r.Offset >= 0 && r.Size >= 0 && r.Offset+r.Size <= len(data)
		}
		if l.EmbeddedDataHash != nil && len(l.EmbeddedDataHash) != sha256.Size {
			t.Fatalf("embedded hash of %d bytes", len(l.EmbeddedDataHash))
		}
		if !inBlob(l.BTF) {
			t.Fatalf("BTF %+v outside the blob", l.BTF)
		}
		for _, p := range l.Programs {
			if !inBlob(Range{p.InsnOffset, 8 * p.InsnCount}) || !bytes.Equal(p.Insns, data[p.InsnOffset:p.InsnOffset+8*p.InsnCount]) ||
				sha256.Sum256(p.Insns) != p.Digest || p.InsnCount == 0 {
				t.Fatalf("program %q: bad instruction range or digest", p.Name)
			}
			for _, s := range p.RelocSlots {
				if s.Insn < 0 || s.Insn+s.Width > p.InsnCount {
					t.Fatalf("program %q: slot %+v outside the program", p.Name, s)
				}
			}
		}
		for _, m := range l.Maps {
			if !inBlob(m.InitialValue) {
				t.Fatalf("map %q: initial value %+v outside the blob", m.Name, m.InitialValue)
			}
		}
		for _, c := range l.Calls {
			if !inBlob(Range{c.AttrOffset, c.AttrSize}) {
				t.Fatalf("call %+v: attr outside the blob", c)
			}
		}
	})
}
