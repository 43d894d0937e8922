package bpfsys_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// fixture is one bpftool light skeleton's arrays, read from its header by
// headerArray. The real parser lives elsewhere; this one only knows the
// literal form bpftool writes.
type fixture struct {
	name            string // "counter", "pair", "rocfg"
	signed          bool
	insns, data     []byte // opts_insn, opts_data
	sig, exclHash   []byte // opts_sig, opts_excl_hash (signed headers only)
	nrMaps, nrProgs int
	progNames       []string
}

// fixtureShape gives a fixture's number of maps and the names of its
// programs (the members of the skeleton struct's maps and progs).
func fixtureShape(name string) (nrMaps int, progs []string) {
	switch name {
	case "counter":
		return 2, []string{"count_sys_enter"}
	case "pair":
		return 1, []string{"pair_enter", "pair_exit"}
	case "rocfg":
		return 2, []string{"rocfg_filter"}
	}
	return 0, nil
}

func loadFixture(tb testing.TB, name string, signed bool) fixture {
	tb.Helper()
	file := "headers/" + name + ".lskel.h"
	if signed {
		file = "headers/" + name + ".signed.lskel.h"
	}
	src, err := os.ReadFile(testutil.LskelFile(tb, file))
	if err != nil {
		tb.Fatal(err)
	}
	f := fixture{name: name, signed: signed}
	f.nrMaps, f.progNames = fixtureShape(name)
	f.nrProgs = len(f.progNames)
	for _, a := range []struct {
		cName string
		dst   *[]byte
		want  bool
	}{
		{"opts_insn", &f.insns, true},
		{"opts_data", &f.data, true},
		{"opts_sig", &f.sig, signed},
		{"opts_excl_hash", &f.exclHash, signed},
	} {
		b, found, err := headerArray(src, a.cName)
		if err != nil {
			tb.Fatalf("%s: %s: %v", file, a.cName, err)
		}
		if found != a.want {
			tb.Fatalf("%s: %s present = %v, want %v", file, a.cName, found, a.want)
		}
		*a.dst = b
	}
	return f
}

// headerArray extracts the bytes of the C string literal
// `static const char NAME[] __attribute__((__aligned__(8))) = "\` ... `";`.
// The literal holds only `\0` and `\xNN` escapes and backslash-newline line
// continuations; its length excludes the implicit trailing NUL.
func headerArray(src []byte, name string) ([]byte, bool, error) {
	start := []byte("static const char " + name + "[] __attribute__((__aligned__(8))) = \"")
	i := bytes.Index(src, start)
	if i < 0 {
		return nil, false, nil
	}
	p := i + len(start)
	var out []byte
	for {
		if p >= len(src) {
			return nil, true, fmt.Errorf("unterminated literal")
		}
		switch c := src[p]; {
		case c == '"':
			if p+1 >= len(src) || src[p+1] != ';' {
				return nil, true, fmt.Errorf("offset %d: literal not closed by \";\"", p)
			}
			return out, true, nil
		case c != '\\' || p+1 >= len(src):
			return nil, true, fmt.Errorf("offset %d: unexpected byte %q", p, c)
		case src[p+1] == '\n':
			p += 2
		case src[p+1] == '0':
			out = append(out, 0)
			p += 2
		case src[p+1] == 'x' && p+3 < len(src):
			var b [1]byte
			if _, err := hex.Decode(b[:], src[p+2:p+4]); err != nil {
				return nil, true, fmt.Errorf("offset %d: bad hex escape: %v", p, err)
			}
			out = append(out, b[0])
			p += 4
		default:
			return nil, true, fmt.Errorf("offset %d: unsupported escape %q", p, src[p+1])
		}
	}
}

// allFixtures lists every header, unsigned then signed.
func allFixtures(tb testing.TB) []fixture {
	var out []fixture
	for _, signed := range []bool{false, true} {
		for _, name := range []string{"counter", "pair", "rocfg"} {
			out = append(out, loadFixture(tb, name, signed))
		}
	}
	return out
}

func (f fixture) String() string {
	if f.signed {
		return f.name + ".signed"
	}
	return f.name
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

// flip returns a copy of b with byte i inverted.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}
