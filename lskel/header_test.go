package lskel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// lskelNames are the fixture programs; each has an unsigned and a signed header.
var lskelNames = []string{"counter", "pair", "rocfg"}

func headerFiles() []string {
	var out []string
	for _, n := range lskelNames {
		out = append(out, n+".lskel.h", n+".signed.lskel.h")
	}
	return out
}

func readLskel(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(testutil.LskelFile(tb, rel))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func parseHeaderFixture(tb testing.TB, file string) *Artifact {
	tb.Helper()
	a, err := ParseHeader(readLskel(tb, "headers/"+file))
	if err != nil {
		tb.Fatalf("%s: %v", file, err)
	}
	return a
}

// manifest mirrors the fields of testdata/lskel/manifest.json the tests use.
type manifest struct {
	Headers []struct {
		File           string `json:"file"`
		SkeletonStruct string `json:"skeleton_struct"`
		Signed         bool   `json:"signed"`
		Arrays         []struct {
			CName  string `json:"c_name"`
			Line   int    `json:"line"`
			Size   int    `json:"size"`
			SHA256 string `json:"sha256"`
			Role   string `json:"role"`
		} `json:"arrays"`
		LoaderInsnCount int    `json:"loader_insn_count"`
		SHA256OptsData  string `json:"sha256_opts_data"`
		SHA256OptsInsn  string `json:"sha256_opts_insn"`
		OptsExclHash    string `json:"opts_excl_hash"`
	} `json:"headers"`
}

func readManifest(tb testing.TB) manifest {
	tb.Helper()
	var m manifest
	if err := json.Unmarshal(readLskel(tb, "manifest.json"), &m); err != nil {
		tb.Fatal(err)
	}
	if len(m.Headers) != 6 {
		tb.Fatalf("manifest lists %d headers, want 6", len(m.Headers))
	}
	return m
}

func sha256Hex(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}

// TestParseHeaderManifest checks every array of every fixture header against
// the sizes and digests recorded in manifest.json.
func TestParseHeaderManifest(t *testing.T) {
	member := regexp.MustCompile(`skel->(\w+)`)
	for _, h := range readManifest(t).Headers {
		t.Run(path.Base(h.File), func(t *testing.T) {
			a, err := ParseHeader(readLskel(t, h.File))
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != h.SkeletonStruct || a.Source != FormatHeader || a.KeyringID != 0 {
				t.Errorf("name %q source %v keyring %d, want %q header 0", a.Name, a.Source, a.KeyringID, h.SkeletonStruct)
			}
			if a.Signed() != h.Signed {
				t.Errorf("signed = %v, want %v", a.Signed(), h.Signed)
			}
			var globals []GlobalData
			for _, arr := range h.Arrays {
				var got []byte
				switch arr.CName {
				case "opts_insn":
					got = a.Insns
				case "opts_data":
					got = a.Data
				case "opts_sig":
					got = a.Signature
				case "opts_excl_hash":
					got = a.ExclHash
				case "data":
					m := member.FindStringSubmatch(arr.Role)
					if m == nil {
						t.Fatalf("manifest role %q names no skeleton member", arr.Role)
					}
					globals = append(globals, GlobalData{Name: m[1]})
					for _, g := range a.Globals {
						if g.Name == m[1] {
							got = g.Data
						}
					}
				default:
					t.Fatalf("manifest array %q unknown to the test", arr.CName)
				}
				if len(got) != arr.Size || sha256Hex(got) != arr.SHA256 {
					t.Errorf("%s: %d bytes sha256 %s, want %d bytes %s", arr.CName, len(got), sha256Hex(got), arr.Size, arr.SHA256)
				}
			}
			if len(a.Globals) != len(globals) {
				t.Errorf("%d global-data arrays, manifest has %d", len(a.Globals), len(globals))
			}
			if len(a.Insns)/insnSize != h.LoaderInsnCount {
				t.Errorf("%d loader insns, want %d", len(a.Insns)/insnSize, h.LoaderInsnCount)
			}
			if sha256Hex(a.Data) != h.SHA256OptsData || sha256Hex(a.Insns) != h.SHA256OptsInsn {
				t.Errorf("data/insns digests differ from the manifest")
			}
			if h.Signed {
				if hex.EncodeToString(a.ExclHash) != sha256Hex(a.Insns) || hex.EncodeToString(a.ExclHash) != h.OptsExclHash {
					t.Errorf("excl hash %x, want SHA-256(insns) %s", a.ExclHash, sha256Hex(a.Insns))
				}
			} else if a.Signature != nil || a.ExclHash != nil {
				t.Errorf("unsigned header has signature or excl hash")
			}
		})
	}
}

// TestParseHeaderSharedData: the unsigned and signed header of one program
// carry the same data blob and global data; only the loader differs.
func TestParseHeaderSharedData(t *testing.T) {
	for _, n := range lskelNames {
		u := parseHeaderFixture(t, n+".lskel.h")
		s := parseHeaderFixture(t, n+".signed.lskel.h")
		if !bytes.Equal(u.Data, s.Data) {
			t.Errorf("%s: opts_data differs between unsigned and signed header", n)
		}
		if diff := cmp.Diff(u.Globals, s.Globals); diff != "" {
			t.Errorf("%s: globals differ (-unsigned +signed):\n%s", n, diff)
		}
		if bytes.Equal(u.Insns, s.Insns) {
			t.Errorf("%s: unsigned and signed loaders are identical", n)
		}
	}
}

// headerLayoutVariants are ways of rewriting a real header that C allows
// and that leave what it submits unchanged.
func headerLayoutVariants() map[string]func(string) string {
	return map[string]func(string) string{
		"crlf": func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") },
		"one line per literal": func(s string) string {
			return strings.ReplaceAll(s, "\\\n", "")
		},
		"adjacent literals": func(s string) string {
			return strings.ReplaceAll(s, "\\\n", "\"\n\t\"")
		},
		"spaces and comments": func(s string) string {
			s = strings.ReplaceAll(s, "static const char opts_insn[] __attribute__((__aligned__(8))) =",
				"static  const\tchar /* loader */ opts_insn [ ]\n__attribute__ (( __aligned__ ( 8 ) )) // c\n =")
			return strings.ReplaceAll(s, "struct rocfg_lskel {", "struct\n rocfg_lskel\n{ /* x */")
		},
		"no attribute": func(s string) string {
			return strings.ReplaceAll(s, " __attribute__((__aligned__(8)))", "")
		},
		"splice inside escape": func(s string) string {
			return strings.Replace(s, `\x60\0\0\0`, "\\x6\\\n0\\0\\0\\0", 1)
		},
		"octal and plain bytes": func(s string) string {
			// "\x72\x6f\x63" is "roc"; \0141 would be 'a' followed by '1'.
			return strings.Replace(s, `\x72\x6f\x63\x66\x67`, `r\157c\146g`, 1)
		},
	}
}

// TestParseHeaderLayoutVariants rewrites a real header in ways C allows and
// checks that the artifact does not change.
func TestParseHeaderLayoutVariants(t *testing.T) {
	orig := string(readLskel(t, "headers/rocfg.signed.lskel.h"))
	want := parseHeaderFixture(t, "rocfg.signed.lskel.h")
	variants := headerLayoutVariants()
	for name, edit := range variants {
		t.Run(name, func(t *testing.T) {
			src := edit(orig)
			if src == orig {
				t.Fatal("edit changed nothing")
			}
			got, err := ParseHeader([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("artifact changed (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseHeaderErrors feeds broken variants of a real header and checks
// that each error names what is wrong.
func TestParseHeaderErrors(t *testing.T) {
	orig := string(readLskel(t, "headers/counter.signed.lskel.h"))
	bigSig := strings.Repeat(`\x30`, MaxSignatureSize+1)
	cases := []struct {
		name   string
		src    string
		want   string // substring of the error
		tooBig bool
	}{
		{"bad hex escape", strings.Replace(orig, `\xbf\x16\0\0\0\0\0\0\xbf\xa1`, `\xzz`, 1), `line 203: \x without hex digits`, false},
		{"hex escape out of range", strings.Replace(orig, `\xbf\x16\0\0\0\0\0\0\xbf\xa1`, `\xbf1`, 1), "line 203: hex escape out of range", false},
		{"unknown escape", strings.Replace(orig, `\xbf\x16`, `\q\x16`, 1), `unknown escape \q`, false},
		{"missing opts_insn", strings.Replace(orig, "char opts_insn[]", "char opts_insm[]", 1), "line 202: counter_lskel__load: `static const char opts_insm[]", false},
		{"missing opts_data", strings.Replace(orig, "char opts_data[]", "char opts_date[]", 1), "line 94: counter_lskel__load: `static const char opts_date[]", false},
		{"odd insn length", strings.Replace(orig, `\x95\0\0\0\0\0\0\0";`, `\x95\0\0\0\0\0\0\0\x01";`, 1), "line 202: insns: length 1673 is not a multiple of 8", false},
		{"duplicate opts_data", strings.Replace(orig, "static const char opts_insn[]", "static const char opts_data[] = \"\\0\";\n static const char opts_insn[]", 1), "line 202: counter_lskel__load: `static const char opts_data[] = \"\\0\";`: not bpftool's form; bpftool writes `static const char opts_insn[]` here", false},
		{"signature without excl hash", strings.Replace(orig, "char opts_excl_hash[]", "char opts_excl_hashx[]", 1), "line 281: counter_lskel__load: `static const char opts_excl_hashx[]", false},
		{"unterminated literal", orig[:strings.Index(orig, `\x95\0\0\0\0\0\0\0";`)], "unterminated literal", false},
		{"newline in literal", strings.Replace(orig, "\\x95\\0\\0\\0\\0\\0\\0\\0\";", "\\x95\n\";", 1), "newline in literal", false},
		{"unterminated comment", orig + "/* no end", "unterminated comment", false},
		{"no skeleton struct", strings.Replace(orig, "struct bpf_loader_ctx ctx;", "struct bpf_loader_ctx ctx2;", 1), "skeleton struct: `struct NAME", false},
		{"data without member", strings.Replace(orig, "skel->bss = (__typeof__", "skel->bss2 ; (__typeof__", 1), "data: not followed by `skel->MEMBER", false},
		{"oversize signature", strings.Replace(orig, `"\`+"\n"+`\x30\x82\x01\x73`, `"`+bigSig+`\`+"\n"+`\x30\x82\x01\x73`, 1), "signature: size 8568 exceeds limit 8192", true},
		{"empty excl hash", regexp.MustCompile(`(?s)opts_excl_hash\[\] __attribute__\(\(__aligned__\(8\)\)\) = ".*?";`).ReplaceAllString(orig, `opts_excl_hash[] = "";`), "excl_hash: length 0, want 32", false},
		{"empty input", "", "skeleton struct", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src == orig {
				t.Fatal("edit changed nothing")
			}
			_, err := ParseHeader([]byte(tc.src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want ErrMalformed containing %q", err, tc.want)
			}
			if errors.Is(err, ErrTooLarge) != tc.tooBig {
				t.Errorf("errors.Is(err, ErrTooLarge) = %v, want %v", !tc.tooBig, tc.tooBig)
			}
		})
	}
}

// BenchmarkParseHeader measures reading the signed rocfg header (21 KiB).
func BenchmarkParseHeader(b *testing.B) {
	src := readLskel(b, "headers/rocfg.signed.lskel.h")
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(src); err != nil {
			b.Fatal(err)
		}
	}
}
