package cms

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// signedFixtures are the bpftool-signed light skeletons of the fixture set.
var signedFixtures = []string{"counter", "pair", "rocfg"}

// fixture holds the arrays of one signed header.
type fixture struct {
	name string
	insn []byte // opts_insn: the signed content
	sig  []byte // opts_sig: bpftool's CMS
	data []byte // opts_data: the loader's data map
}

// loadFixture extracts opts_insn, opts_sig and opts_data from a signed
// .lskel.h. It reads the C string literals directly so this package's tests
// do not depend on the header parser of package measure: a literal starts
// at a line `static const char NAME[] ... = "\`, continues over lines of
// \xNN and \0 escapes ending in a backslash, and closes with `";`.
func loadFixture(tb testing.TB, name string) fixture {
	tb.Helper()
	path := testutil.LskelFile(tb, "headers/"+name+".signed.lskel.h")
	arrays, err := cArrays(path)
	if err != nil {
		tb.Fatalf("extract %s: %v", path, err)
	}
	f := fixture{name: name, insn: arrays["opts_insn"], sig: arrays["opts_sig"], data: arrays["opts_data"]}
	if f.insn == nil || f.sig == nil || f.data == nil {
		tb.Fatalf("%s: missing opts_insn, opts_sig or opts_data", path)
	}
	return f
}

func cArrays(path string) (map[string][]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	out := map[string][]byte{}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var name string
	var buf []byte
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if name == "" {
			if i := strings.Index(s, "static const char "); i >= 0 && strings.HasSuffix(s, `= "\`) {
				rest := s[i+len("static const char "):]
				name = rest[:strings.IndexByte(rest, '[')]
				buf = []byte{}
			}
			continue
		}
		end := strings.HasSuffix(s, `";`)
		switch {
		case end:
			s = strings.TrimSuffix(s, `";`)
		case strings.HasSuffix(s, `\`):
			s = strings.TrimSuffix(s, `\`)
		default:
			return nil, fmt.Errorf("line %d: unexpected line in literal %s", line, name)
		}
		for len(s) > 0 {
			switch {
			case strings.HasPrefix(s, `\x`) && len(s) >= 4:
				v, err := strconv.ParseUint(s[2:4], 16, 8)
				if err != nil {
					return nil, fmt.Errorf("line %d: %v", line, err)
				}
				buf = append(buf, byte(v))
				s = s[4:]
			case strings.HasPrefix(s, `\0`):
				buf = append(buf, 0)
				s = s[2:]
			default:
				return nil, fmt.Errorf("line %d: unexpected text %q in literal %s", line, s, name)
			}
		}
		if end {
			out[name] = buf
			name = ""
		}
	}
	return out, sc.Err()
}

func fixtureCert(tb testing.TB) *x509.Certificate {
	tb.Helper()
	b, err := os.ReadFile(testutil.LskelFile(tb, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func fixtureKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	b, err := os.ReadFile(testutil.LskelFile(tb, "keys/TEST_ONLY_signing_key.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatal("no PEM block in signing key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return k.(crypto.Signer)
}

// TestFixtureExtraction checks the extractor against manifest facts: sizes
// of the arrays (manifest.json) for each signed header.
func TestFixtureExtraction(t *testing.T) {
	want := map[string][3]int{ // insn, sig, data sizes from the fixture README
		"counter": {1672, 375, 3240},
		"pair":    {1768, 375, 3744},
		"rocfg":   {1776, 375, 4256},
	}
	for _, n := range signedFixtures {
		f := loadFixture(t, n)
		got := [3]int{len(f.insn), len(f.sig), len(f.data)}
		if got != want[n] {
			t.Errorf("%s: sizes %v, want %v", n, got, want[n])
		}
		if !bytes.HasPrefix(f.sig, []byte{0x30, 0x82, 0x01, 0x73}) {
			t.Errorf("%s: opts_sig does not start like a 375-byte DER SEQUENCE", n)
		}
	}
}
