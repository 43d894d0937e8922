package bench

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// signedFixture reads the signed counter fixture and its trust store.
func signedFixture(tb testing.TB) (*lskel.Artifact, *cms.TrustStore) {
	tb.Helper()
	src, err := os.ReadFile(testutil.LskelFile(tb, "headers/counter.signed.lskel.h"))
	if err != nil {
		tb.Fatal(err)
	}
	a, err := lskel.Load(src)
	if err != nil {
		tb.Fatal(err)
	}
	trust, err := cms.LoadTrust(testutil.LskelFile(tb, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		tb.Fatal(err)
	}
	return a, trust
}

// grownArtifact returns the signed counter fixture with its data blob
// grown to size bytes (the fixture's blob, then fill), re-signed the way
// bpftool -S would sign it: the loader's embedded data hash is the new
// blob's, the signature and excl_prog_hash are over the new loader. So
// the measurement is of a valid artifact whose every link holds.
func grownArtifact(tb testing.TB, size int, fill func([]byte)) (*lskel.Artifact, *cms.TrustStore) {
	tb.Helper()
	a, trust := signedFixture(tb)
	data := make([]byte, size)
	n := copy(data, a.Data)
	fill(data[n:])
	old := measure.MapHash(a.Data)
	a.Data = data
	a.Insns = replaceDataHash(tb, a.Insns, old, measure.MapHash(data))
	key, cert := testutil.LskelSigner(tb)
	sig, err := cms.Sign(a.Insns, key, cert, cms.SignOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	excl := sha256.Sum256(a.Insns)
	a.Signature, a.ExclHash = sig, excl[:]
	insp, err := measure.Inspect(a, measure.Options{Trust: trust})
	if err != nil {
		tb.Fatal(err)
	}
	if !insp.Accepted() {
		tb.Fatalf("grown artifact not accepted: %v", insp.Problems())
	}
	return a, trust
}

// replaceDataHash returns insns with the data hash the loader embeds (the
// immediates of four ld_imm64, low and high 32-bit halves) replaced.
func replaceDataHash(tb testing.TB, insns []byte, old, new [32]byte) []byte {
	tb.Helper()
	out := bytes.Clone(insns)
	for k := range 4 {
		lo, hi := old[8*k:8*k+4], old[8*k+4:8*k+8]
		found := false
		for p := 4; p+12 <= len(out); p += 8 {
			if bytes.Equal(out[p:p+4], lo) && bytes.Equal(out[p+8:p+12], hi) {
				copy(out[p:p+4], new[8*k:8*k+4])
				copy(out[p+8:p+12], new[8*k+4:8*k+8])
				found = true
				break
			}
		}
		if !found {
			tb.Fatalf("embedded data hash word %d not found in the loader", k)
		}
	}
	return out
}

// measureLoad is what the agent computes for a load before anything is
// logged: the artifact parsed, inspected for a load (loader context
// included) and its measurement encoded.
func measureLoad(src []byte, trust *cms.TrustStore) error {
	a, err := lskel.Load(src)
	if err != nil {
		return err
	}
	in, err := measure.Inspect(a, measure.Options{Trust: trust, Load: &measure.Load{
		Requester:  &measure.Requester{PID: 4242, Exe: "/usr/bin/loader"},
		Context:    func(maps, progs int) []byte { return make([]byte, 16+16*maps+8*progs) },
		BootTimeNS: 1,
	}})
	if err != nil {
		return err
	}
	if !in.Accepted() {
		return errors.New("not accepted: " + strings.Join(in.Problems(), "; "))
	}
	_, err = in.Measurement.MarshalBinary()
	return err
}

// BenchmarkMeasureVsSHA256 is the ratio of measuring to hashing: A is
// measure.Inspect of the signed counter fixture with its data blob grown
// to 1 MiB of random bytes, and its encoding (loader analysis, every
// digest, the RSA signature check against the trust store or its cached
// verdict, the hash-chain links); B is crypto/sha256 over the same 1 MiB.
// One goroutine each: the ratio of their throughputs over the blob says
// how close measuring runs to hashing its bytes once.
//
// Three runs: "repeated" measures the same artifact again and again with
// one measure.Cache, as the agent does when a host loads the same
// signed loader many times (every op after the first a hit); "first"
// gives every op a new, empty cache, so every op verifies the signature
// and stores the verdict, as the agent does for an artifact it has not
// seen; "first-vs-floor" is the first measurement against what no first
// measurement can skip: hashing the same 1 MiB plus one bare RSA-2048
// PKCS #1 v1.5 verification (crypto/rsa, a key of the fixture's size).
func BenchmarkMeasureVsSHA256(b *testing.B) {
	const size = 1 << 20
	a, trust := grownArtifact(b, size, func(p []byte) { rand.Read(p) })
	data := a.Data
	hashOp := func() error {
		sha256.Sum256(data)
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	loaderSum := sha256.Sum256(a.Insns)
	rsaSig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, loaderSum[:])
	if err != nil {
		b.Fatal(err)
	}
	floorOp := func() error {
		sha256.Sum256(data)
		return rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, loaderSum[:], rsaSig)
	}
	measureOp := func(cache func() *measure.Cache) func() error {
		return func() error {
			in, err := measure.Inspect(a, measure.Options{Trust: trust, Cache: cache()})
			if err != nil {
				return err
			}
			if in.Measurement.DataLink != measure.LinkHolds || in.Measurement.Verdict != cms.VerdictOK {
				return fmt.Errorf("verdict %v, data link %v", in.Measurement.Verdict, in.Measurement.DataLink)
			}
			_, err = in.Measurement.MarshalBinary()
			return err
		}
	}
	shared := measure.NewCache(measure.CacheLimits{})
	fresh := func() *measure.Cache { return measure.NewCache(measure.CacheLimits{}) }
	hash := side{name: "sha256.Sum256 1 MiB", op: hashOp, bytes: size}
	for _, run := range []struct {
		name  string
		cache func() *measure.Cache
		b     side
		unit  string // names B in the metrics
	}{
		{"repeated", func() *measure.Cache { return shared }, hash, "sha256"},
		{"first", fresh, hash, "sha256"},
		{"first-vs-floor", fresh, side{name: "sha256.Sum256 1 MiB + rsa.VerifyPKCS1v15 (2048)", op: floorOp, bytes: size}, "floor"},
	} {
		b.Run(run.name, func(b *testing.B) {
			r := alternate(b,
				side{name: "measure.Inspect 1 MiB, " + run.name, op: measureOp(run.cache), bytes: size},
				run.b)
			b.ReportMetric(r.medianCPURate(0)*size/1e6, "measure-MB/CPU-s")
			b.ReportMetric(r.medianCPURate(1)*size/1e6, run.unit+"-MB/CPU-s")
			b.ReportMetric(100*r.medianRatio(), "%"+run.unit+"-cpu")
			b.ReportMetric(100*r.medianWallRatio(), "%"+run.unit+"-wall")
		})
	}
	if s := shared.Stats().Verdicts; s.Hits == 0 || s.Misses != 1 {
		b.Errorf("repeated: %d hits, %d misses; want one miss and the rest hits", s.Hits, s.Misses)
	}
}

// headerOf writes a as bpftool gen skeleton -L -S writes its NAME__load
// (gen.c: the data blob's bytes as \0 or \xNN, 78 columns to a line, each
// line ended by a splice), inside the fixture header it came from: the
// fixture's opts_* literals are replaced, everything else stays.
func headerOf(tb testing.TB, fixture []byte, a *lskel.Artifact) []byte {
	tb.Helper()
	src := string(fixture)
	for _, arr := range []struct {
		name string
		v    []byte
	}{{"opts_data", a.Data}, {"opts_insn", a.Insns}, {"opts_sig", a.Signature}, {"opts_excl_hash", a.ExclHash}} {
		decl := "static const char " + arr.name + "[] __attribute__((__aligned__(8))) = \""
		i := strings.Index(src, decl)
		if i < 0 {
			tb.Fatalf("%s not in the fixture", arr.name)
		}
		start := i + len(decl)
		end := strings.Index(src[start:], "\";")
		if end < 0 {
			tb.Fatalf("%s: literal not terminated", arr.name)
		}
		src = src[:start] + "\\\n" + bpftoolHex(arr.v) + src[start+end:]
	}
	return []byte(src)
}

// bpftoolHex is bpftool's print_hex (gen.c).
func bpftoolHex(b []byte) string {
	var w strings.Builder
	col := 0
	for _, c := range b {
		n := 4
		if c == 0 {
			n = 2
		}
		col += n
		if col > 78 {
			w.WriteString("\\\n")
			col = n
		}
		if c == 0 {
			w.WriteString(`\0`)
		} else {
			fmt.Fprintf(&w, `\x%02x`, c)
		}
	}
	return w.String()
}

// BenchmarkHeaderVsBundle is the measured path of one load without TPM or
// kernel, from a 200 KB bpftool header (A) and from the same artifact as
// a bundle (B): lskel.Load, measure.Inspect for a load, the measurement's
// encoding. The blob is the fixture's, grown with random bytes, one in
// four of them zero, so that bpftool's \0 and \xNN mix as in real blobs.
// The ratio is the cost of reading C over reading the bundle; the target
// is A's time per op.
func BenchmarkHeaderVsBundle(b *testing.B) {
	fixture, err := os.ReadFile(testutil.LskelFile(b, "headers/counter.signed.lskel.h"))
	if err != nil {
		b.Fatal(err)
	}
	a, trust := grownArtifact(b, 56<<10, func(p []byte) {
		rand.Read(p)
		for i := range p {
			if p[i]&3 == 0 {
				p[i] = 0
			}
		}
	})
	header := headerOf(b, fixture, a)
	bundle, err := a.MarshalBundle()
	if err != nil {
		b.Fatal(err)
	}
	for _, src := range [][]byte{header, bundle} {
		got, err := lskel.Load(src)
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got.Data, a.Data) || !bytes.Equal(got.Insns, a.Insns) || !bytes.Equal(got.Signature, a.Signature) {
			b.Fatal("the generated artifact does not read back")
		}
	}
	b.Logf("header %d bytes, bundle %d bytes, data blob %d bytes", len(header), len(bundle), len(a.Data))
	r := alternate(b,
		side{name: fmt.Sprintf("header %d KB", len(header)/1000), op: func() error { return measureLoad(header, trust) }, bytes: int64(len(header))},
		side{name: fmt.Sprintf("bundle %d KB", len(bundle)/1000), op: func() error { return measureLoad(bundle, trust) }})
	b.ReportMetric(1e3/r.medianRate(0), "header-ms/op")
	b.ReportMetric(1e3/r.medianCPURate(0), "header-CPU-ms/op")
	b.ReportMetric(1e3/r.medianCPURate(1), "bundle-CPU-ms/op")
	b.ReportMetric(100*r.medianRatio(), "%bundle-cpu")
}
