package lskel

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// The C compiler is the independent check of what a header submits: each
// header is compiled against a stand-in for libbpf's bpf/skel_internal.h
// whose bpf_load_and_run prints the bytes and sizes the header's
// NAME__load hands it (the real one passes them to bpf() unchanged:
// insns/insns_sz to BPF_PROG_LOAD, data/data_sz to the map, signature,
// signature_sz, excl_prog_hash, excl_prog_hash_sz as given). Everything
// else the header calls is a harmless stub.
const skelInternalStub = `#ifndef STUB_SKEL_INTERNAL_H
#define STUB_SKEL_INTERNAL_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
typedef unsigned long long __u64;
typedef unsigned int __u32;
typedef int __s32;
struct bpf_loader_ctx { __u32 sz; __u32 flags; __u32 log_level; __u32 log_size; __u64 log_buf; };
struct bpf_map_desc { int map_fd; __u32 max_entries; __u64 initial_value; };
struct bpf_prog_desc { int prog_fd; };
struct bpf_load_and_run_opts {
	struct bpf_loader_ctx *ctx;
	const void *data;
	const void *insns;
	__u32 data_sz;
	__u32 insns_sz;
	const char *errstr;
	void *signature;
	__u32 signature_sz;
	__s32 keyring_id;
	void *excl_prog_hash;
	__u32 excl_prog_hash_sz;
};
static void *skel_alloc(size_t size) { return calloc(1, size); }
static void skel_free(const void *p) { free((void *)p); }
static void skel_closenz(int fd) { (void)fd; }
static int skel_raw_tracepoint_open(const char *name, int prog_fd) { (void)name; (void)prog_fd; return -1; }
static void *skel_prep_map_data(const void *val, size_t mmap_sz, size_t val_sz)
{
	void *p = calloc(1, mmap_sz);
	if (p) memcpy(p, val, val_sz);
	return p;
}
static void *skel_finalize_map_data(__u64 *init_val, size_t mmap_sz, int flags, int fd)
{
	(void)mmap_sz; (void)flags; (void)fd;
	return (void *)(long)*init_val;
}
static void skel_free_map_data(void *p, __u64 addr, size_t sz) { (void)addr; (void)sz; free(p); }
static void stub_dump(const char *what, const void *p, __u32 n)
{
	printf("%s %u ", what, n);
	for (__u32 i = 0; p && i < n; i++)
		printf("%02x", ((const unsigned char *)p)[i]);
	printf("\n");
}
static int bpf_load_and_run(struct bpf_load_and_run_opts *opts)
{
	printf("call\n");
	stub_dump("insns", opts->insns, opts->insns_sz);
	stub_dump("data", opts->data, opts->data_sz);
	stub_dump("signature", opts->signature, opts->signature_sz);
	stub_dump("excl_hash", opts->excl_prog_hash, opts->excl_prog_hash_sz);
	printf("ctx_is_skel %d\n", (void *)opts->ctx == (void *)opts->ctx && opts->ctx != NULL);
	return 0;
}
#endif
`

// submission is what a compiled header's NAME__load handed
// bpf_load_and_run, each call in order.
type submission struct {
	Insns, Data, Signature, ExclHash []byte
}

// compileSubmissions compiles src with the stand-in skel_internal.h, runs
// name__open and name__load, and returns what reached bpf_load_and_run.
// It fails the test when the header does not compile.
func compileSubmissions(t *testing.T, src []byte, name string, cflags ...string) []submission {
	t.Helper()
	cc := testutil.RequireTool(t, "gcc")
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "bpf"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "bpf", "skel_internal.h"), []byte(skelInternalStub), 0o644))
	must(os.WriteFile(filepath.Join(dir, "skel.h"), src, 0o644))
	main := fmt.Sprintf(`#include "skel.h"
int main(void)
{
	struct %[1]s *skel = %[1]s__open();
	if (!skel)
		return 2;
	return %[1]s__load(skel) ? 3 : 0;
}
`, name)
	must(os.WriteFile(filepath.Join(dir, "main.c"), []byte(main), 0o644))
	bin := filepath.Join(dir, "main")
	args := append([]string{"-w", "-I", dir, "-o", bin, filepath.Join(dir, "main.c")}, cflags...)
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	var subs []submission
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 1 && f[0] == "call" {
			subs = append(subs, submission{})
			continue
		}
		if len(f) < 2 || len(subs) == 0 {
			continue
		}
		var b []byte
		if len(f) == 3 {
			if b, err = hex.DecodeString(f[2]); err != nil {
				t.Fatal(err)
			}
		}
		s := &subs[len(subs)-1]
		switch f[0] {
		case "insns":
			s.Insns = b
		case "data":
			s.Data = b
		case "signature":
			s.Signature = b
		case "excl_hash":
			s.ExclHash = b
		}
	}
	return subs
}

// submitted reports whether a compiled header submitted exactly what a
// says: one bpf_load_and_run call with a's bytes.
func submitted(subs []submission, a *Artifact) bool {
	return len(subs) == 1 && bytes.Equal(subs[0].Insns, a.Insns) && bytes.Equal(subs[0].Data, a.Data) &&
		bytes.Equal(subs[0].Signature, a.Signature) && bytes.Equal(subs[0].ExclHash, a.ExclHash)
}

// cString renders b as the body of a C string literal of \xNN escapes,
// split over continued lines as bpftool does.
func cString(b []byte) string {
	var s strings.Builder
	for i, c := range b {
		if i > 0 && i%19 == 0 {
			s.WriteString("\\\n")
		}
		fmt.Fprintf(&s, "\\x%02x", c)
	}
	return s.String()
}

// TestHeaderAsCompiled: every fixture header, and every way of writing one
// that the parser accepts, submits when compiled exactly the artifact
// ParseHeader returns.
func TestHeaderAsCompiled(t *testing.T) {
	for _, file := range headerFiles() {
		t.Run(file, func(t *testing.T) {
			src := readLskel(t, "headers/"+file)
			a, err := ParseHeader(src)
			if err != nil {
				t.Fatal(err)
			}
			if subs := compileSubmissions(t, src, a.Name); !submitted(subs, a) {
				t.Errorf("compiled header submits something else than the parsed artifact (%d calls)", len(subs))
			}
		})
	}
	orig := string(readLskel(t, "headers/rocfg.signed.lskel.h"))
	for name, edit := range headerLayoutVariants() {
		t.Run("rocfg.signed/"+name, func(t *testing.T) {
			src := []byte(edit(orig))
			a, err := ParseHeader(src)
			if err != nil {
				t.Fatal(err)
			}
			if subs := compileSubmissions(t, src, a.Name); !submitted(subs, a) {
				t.Errorf("compiled header submits something else than the parsed artifact (%d calls)", len(subs))
			}
		})
	}
}

// confusedHeader is an edited signed fixture header that, compiled, submits
// something other than the arrays it still carries under bpftool's names.
type confusedHeader struct {
	name   string
	edit   func(t testing.TB, src string) string
	line   string // the offending line as the error must quote it (a substring)
	cflags []string
}

func replaceOnce(t testing.TB, src, old, new string) string {
	t.Helper()
	if !strings.Contains(src, old) {
		t.Fatalf("%q not in the header", old)
	}
	return strings.Replace(src, old, new, 1)
}

func confusedHeaders() []confusedHeader {
	const insnsSz = "\topts.insns_sz = sizeof(opts_insn) - 1;\n"
	const insns = "\topts.insns = (void *)opts_insn;\n"
	const dataSz = "\topts.data_sz = sizeof(opts_data) - 1;\n"
	const data = "\topts.data = (void *)opts_data;\n"
	return []confusedHeader{
		{name: "held-out loader under new array names", line: "static const char evil_data[] __attribute__((__aligned__(8))) =",
			edit: func(t testing.TB, src string) string {
				// Another real loader, the unsigned pair skeleton's, next to
				// the signed counter arrays, and the assignments pointed at it.
				other := parseHeaderFixture(t, "pair.lskel.h")
				arrays := "\tstatic const char evil_data[] __attribute__((__aligned__(8))) = \"\\\n" + cString(other.Data) + "\";\n" +
					"\tstatic const char evil_insn[] __attribute__((__aligned__(8))) = \"\\\n" + cString(other.Insns) + "\";\n"
				src = replaceOnce(t, src, "\topts.signature = (void *)opts_sig;\n", arrays+"\topts.signature = (void *)opts_sig;\n")
				src = replaceOnce(t, src, dataSz+data, "\topts.data_sz = sizeof(evil_data) - 1;\n\topts.data = (void *)evil_data;\n")
				return replaceOnce(t, src, insnsSz+insns, "\topts.insns_sz = sizeof(evil_insn) - 1;\n\topts.insns = (void *)evil_insn;\n")
			}},
		{name: "held-out unsigned loader, signature dropped", line: "static const char evil_data[] = ",
			edit: func(t testing.TB, src string) string {
				other := parseHeaderFixture(t, "rocfg.lskel.h")
				src = replaceOnce(t, src, "\topts.signature = (void *)opts_sig;\n\topts.signature_sz = sizeof(opts_sig) - 1;\n"+
					"\topts.excl_prog_hash = (void *)opts_excl_hash;\n\topts.excl_prog_hash_sz = sizeof(opts_excl_hash) - 1;\n"+
					"\topts.keyring_id = skel->keyring_id;\n",
					"\tstatic const char evil_data[] = \""+cString(other.Data)+"\";\n"+
						"\tstatic const char evil_insn[] = \""+cString(other.Insns)+"\";\n")
				src = replaceOnce(t, src, dataSz+data, "\topts.data_sz = sizeof(evil_data) - 1;\n\topts.data = (void *)evil_data;\n")
				return replaceOnce(t, src, insnsSz+insns, "\topts.insns_sz = sizeof(evil_insn) - 1;\n\topts.insns = (void *)evil_insn;\n")
			}},
		{name: "insns_sz shortened", line: "opts.insns_sz = sizeof(opts_insn) - 9;",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, insnsSz, "\topts.insns_sz = sizeof(opts_insn) - 9;\n")
			}},
		{name: "data pointer moved", line: "opts.data = (void *)opts_data + 8;",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, data, "\topts.data = (void *)opts_data + 8;\n")
			}},
		{name: "signature size zero", line: "opts.signature_sz = 0;",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "opts.signature_sz = sizeof(opts_sig) - 1;", "opts.signature_sz = 0;")
			}},
		{name: "excl_prog_hash from another array", line: "opts.excl_prog_hash = (void *)opts_sig;",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "opts.excl_prog_hash = (void *)opts_excl_hash;", "opts.excl_prog_hash = (void *)opts_sig;")
			}},
		{name: "data_sz shortened", line: "opts.data_sz = sizeof(opts_data) - 1 - 8;",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, dataSz, "\topts.data_sz = sizeof(opts_data) - 1 - 8;\n")
			}},
		{name: "duplicate assignment later", line: "opts.insns = (void *)opts_data;",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, insns, insns+"\topts.insns = (void *)opts_data;\n")
			}},
		{name: "assignment under #if", line: "#if 1",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, insns, "#if 1\n\topts.insns = (void *)opts_data;\n#else\n"+insns+"#endif\n")
			}},
		{name: "macro renames an array", line: "#define opts_insn opts_data",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "\topts.signature = (void *)opts_sig;\n", "#define opts_insn opts_data\n\topts.signature = (void *)opts_sig;\n")
			}},
		{name: "directive behind a comment", line: "/* x */ # define opts_insn opts_data",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "\topts.signature = (void *)opts_sig;\n", "/* x */ # define opts_insn opts_data\n\topts.signature = (void *)opts_sig;\n")
			}},
		{name: "directive as a digraph", line: "%:define opts_insn opts_data",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "\topts.signature = (void *)opts_sig;\n", "%:define opts_insn opts_data\n\topts.signature = (void *)opts_sig;\n")
			}},
		{name: "directive as a trigraph", line: "??=define opts_insn opts_data", cflags: []string{"-std=c11"},
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "\topts.signature = (void *)opts_sig;\n", "??=define opts_insn opts_data\n\topts.signature = (void *)opts_sig;\n")
			}},
		{name: "macro before the function", line: "#define bpf_load_and_run(o) (((o)->insns = (o)->data), bpf_load_and_run(o))",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "static inline int\ncounter_lskel__load(", "#define bpf_load_and_run(o) (((o)->insns = (o)->data), bpf_load_and_run(o))\nstatic inline int\ncounter_lskel__load(")
			}},
		{name: "second call", line: "opts.insns = (void *)opts_data;",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, "\terr = bpf_load_and_run(&opts);\n\tif (err < 0)\n\t\treturn err;\n",
					"\terr = bpf_load_and_run(&opts);\n\tif (err < 0)\n\t\treturn err;\n\topts.insns = (void *)opts_data;\n\terr = bpf_load_and_run(&opts);\n")
			}},
		{name: "spliced identifier", line: "opts.insns = (void *)opts_\\",
			edit: func(t testing.TB, src string) string {
				return replaceOnce(t, src, insns, "\topts.insns = (void *)opts_\\\ndata;\n")
			}},
	}
}

// TestHeaderConfusion: each edited header, compiled, submits something
// other than the arrays that still carry bpftool's names, which is what a
// reader that takes the arrays by name reports; ParseHeader refuses every
// one with an error that quotes the offending line.
func TestHeaderConfusion(t *testing.T) {
	orig := string(readLskel(t, "headers/counter.signed.lskel.h"))
	byName := parseHeaderFixture(t, "counter.signed.lskel.h")
	for _, c := range confusedHeaders() {
		t.Run(c.name, func(t *testing.T) {
			src := []byte(c.edit(t, orig))
			if submitted(compileSubmissions(t, src, byName.Name, c.cflags...), byName) {
				t.Fatal("the edit changes nothing the compiled header submits")
			}
			a, err := ParseHeader(src)
			if err == nil {
				t.Fatalf("accepted, reported as %s (signed %v, loader sha256 %s): not what it submits", a.Name, a.Signed(), sha256Hex(a.Insns))
			}
			var fe *FormatError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &fe) || !strings.HasPrefix(fe.Where, "line ") || !strings.Contains(err.Error(), c.line) {
				t.Errorf("error %q, want a FormatError at a line quoting %q", err, c.line)
			}
		})
	}
}

// genHeader writes a as the smallest header in bpftool's form: the guard,
// skel_internal.h, the skeleton struct, NAME__open, NAME__load as gen.c
// writes it and the C++ _Static_assert blocks.
func genHeader(a *Artifact) string {
	var b strings.Builder
	lit := func(name string, v []byte) {
		fmt.Fprintf(&b, "\tstatic const char %s[] __attribute__((__aligned__(8))) = \"\\\n%s\";\n", name, cString(v))
	}
	guard := "__" + strings.ToUpper(a.Name) + "_SKEL_H__"
	fmt.Fprintf(&b, "#ifndef %[1]s\n#define %[1]s\n\n#include <bpf/skel_internal.h>\n\n", guard)
	fmt.Fprintf(&b, "struct %s {\n\tstruct bpf_loader_ctx ctx;\n", a.Name)
	if a.Signed() {
		b.WriteString("\t__s32 keyring_id;\n")
	}
	b.WriteString("};\n\n")
	fmt.Fprintf(&b, "static inline struct %[1]s *\n%[1]s__open(void)\n{\n\tstruct %[1]s *skel;\n\n\tskel = (struct %[1]s *)skel_alloc(sizeof(*skel));\n\treturn skel;\n}\n\n", a.Name)
	fmt.Fprintf(&b, "static inline int\n%[1]s__load(struct %[1]s *skel)\n{\n\tstruct bpf_load_and_run_opts opts = {};\n\tint err;\n", a.Name)
	lit("opts_data", a.Data)
	lit("opts_insn", a.Insns)
	if a.Signed() {
		lit("opts_sig", a.Signature)
		lit("opts_excl_hash", a.ExclHash)
		for _, st := range loadSigned {
			fmt.Fprintf(&b, "\t%s\n", st)
		}
	}
	for _, st := range loadTail {
		fmt.Fprintf(&b, "\t%s\n", st)
	}
	b.WriteString("\tif (err < 0)\n\t\treturn err;\n\treturn 0;\n}\n\n")
	b.WriteString("#ifdef __cplusplus\n#define _Static_assert static_assert\n#endif\n#ifdef __cplusplus\n#undef _Static_assert\n#endif\n\n")
	fmt.Fprintf(&b, "#endif /* %s */\n", guard)
	return b.String()
}

// TestGenHeader: the smallest header in bpftool's form parses to the
// artifact it was written from and, compiled, submits exactly that.
func TestGenHeader(t *testing.T) {
	for _, file := range []string{"pair.lskel.h", "pair.signed.lskel.h"} {
		t.Run(file, func(t *testing.T) {
			want := parseHeaderFixture(t, file)
			want.Globals = nil
			src := []byte(genHeader(want))
			got, err := ParseHeader(src)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Insns, want.Insns) || !bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Signature, want.Signature) ||
				!bytes.Equal(got.ExclHash, want.ExclHash) || got.Name != want.Name {
				t.Error("parsed artifact differs from the one written")
			}
			if !submitted(compileSubmissions(t, src, want.Name), want) {
				t.Error("compiled header submits something else")
			}
		})
	}
}
