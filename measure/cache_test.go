package measure

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// cloneArtifact copies every byte slice of a, so that tests can change one
// copy's bytes without touching another's.
func cloneArtifact(a *lskel.Artifact) *lskel.Artifact {
	out := *a
	out.Insns = bytes.Clone(a.Insns)
	out.Data = bytes.Clone(a.Data)
	out.Signature = bytes.Clone(a.Signature)
	out.ExclHash = bytes.Clone(a.ExclHash)
	return &out
}

// inspectBoth measures a with no cache, then twice with c, and fails t
// unless the three measurements (encoded) and signature results are the
// same. It returns the cached inspection.
func inspectBoth(t *testing.T, a *lskel.Artifact, trust *cms.TrustStore, c *Cache) *Inspection {
	t.Helper()
	load := &Load{
		Requester:  &Requester{PID: 7, Exe: "/bin/loader"},
		Context:    func(maps, progs int) []byte { return make([]byte, 16+16*maps+8*progs) },
		BootTimeNS: 42,
	}
	var encs [3][]byte
	var ins [3]*Inspection
	for i, cache := range []*Cache{nil, c, c} {
		in, err := Inspect(cloneArtifact(a), Options{Trust: trust, Load: load, Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := in.Measurement.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		encs[i], ins[i] = enc, in
	}
	for i, what := range []string{"", "first with the cache", "again with the cache"} {
		if i == 0 {
			continue
		}
		if !bytes.Equal(encs[i], encs[0]) {
			t.Errorf("measurement %s differs from the uncached one", what)
		}
		if !reflect.DeepEqual(ins[i].Signature, ins[0].Signature) {
			t.Errorf("signature result %s: %+v, uncached %+v", what, ins[i].Signature, ins[0].Signature)
		}
		if !reflect.DeepEqual(ins[i].Layout, ins[0].Layout) {
			t.Errorf("loader analysis %s differs from the uncached one", what)
		}
		if !reflect.DeepEqual(ins[i].Measurement, ins[0].Measurement) {
			t.Errorf("measurement %s: %+v, uncached %+v", what, ins[i].Measurement, ins[0].Measurement)
		}
		if ins[i].Accepted() != ins[0].Accepted() || !reflect.DeepEqual(ins[i].Problems(), ins[0].Problems()) {
			t.Errorf("acceptance %s: %v %q, uncached %v %q", what, ins[i].Accepted(), ins[i].Problems(), ins[0].Accepted(), ins[0].Problems())
		}
	}
	return ins[2]
}

// wantStats fails t unless c counted hits and misses so far.
func wantStats(t *testing.T, c *Cache, hits, misses uint64) {
	t.Helper()
	if s := c.Stats().Verdicts; s.Hits != hits || s.Misses != misses {
		t.Errorf("cache counted %d verdict hits and %d misses, want %d and %d", s.Hits, s.Misses, hits, misses)
	}
}

// selfSigned makes an RSA-2048 certificate valid from notBefore to
// notAfter, with a subjectKeyIdentifier as the fixtures' key has.
func selfSigned(t *testing.T, cn string, notBefore, notAfter time.Time) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	skid := sha1.Sum(pub)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"TEST ONLY"}},
		NotBefore:    notBefore, NotAfter: notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid[:],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

// withCertificate returns the CMS SignedData sig with cert embedded in its
// certificates field (as openssl cms -sign embeds the signer's), the
// signature over its signed attributes unchanged.
func withCertificate(t *testing.T, sig []byte, cert *x509.Certificate) []byte {
	t.Helper()
	var ci struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if rest, err := asn1.Unmarshal(sig, &ci); err != nil || len(rest) > 0 {
		t.Fatalf("ContentInfo: %v (%d bytes left)", err, len(rest))
	}
	var sd struct {
		Version     int
		DigestAlgs  asn1.RawValue
		Encap       asn1.RawValue
		SignerInfos asn1.RawValue
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatalf("SignedData: %v", err)
	}
	out, err := asn1.Marshal(struct {
		Version     int
		DigestAlgs  asn1.RawValue
		Encap       asn1.RawValue
		Certs       asn1.RawValue
		SignerInfos asn1.RawValue
	}{sd.Version, sd.DigestAlgs, sd.Encap, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: cert.Raw}, sd.SignerInfos})
	if err != nil {
		t.Fatal(err)
	}
	ci.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: out}
	sig, err = asn1.Marshal(struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue
	}{ci.Type, ci.Content})
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestVerdictCacheSameMeasurement: for every signed fixture, for a Hornet
// signature and for a signature that embeds its signer's certificate, a
// measurement made with a cached verdict is byte for byte the one made
// without a cache, and the second measurement is a hit.
func TestVerdictCacheSameMeasurement(t *testing.T) {
	trust := fixtureTrust(t)
	arts := map[string]*lskel.Artifact{}
	for _, name := range fixtureHeaders {
		arts[name] = loadFixture(t, name)
	}
	withoutHash := loadersWithoutDataHash(t, "pair")["kernel-check"]
	h := MapHash(withoutHash.Data)
	arts["hornet"] = signArtifact(t, withoutHash, hornetOpts(cms.MapHash{Index: 0, SHA256: h[:]}, cms.MapHash{Index: 3}))
	embedded := signArtifact(t, withoutHash, cms.SignOptions{Scheme: cms.SchemeHornet, SigningTime: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		MapHashes: []cms.MapHash{{Index: 0, SHA256: h[:]}}})
	_, cert := testutil.LskelSigner(t)
	embedded.Signature = withCertificate(t, embedded.Signature, cert)
	arts["hornet, embedded certificate"] = embedded
	for name, a := range arts {
		t.Run(name, func(t *testing.T) {
			c := NewCache(CacheLimits{})
			in := inspectBoth(t, a, trust, c)
			if !a.Signed() {
				wantStats(t, c, 0, 0)
				return
			}
			wantStats(t, c, 1, 1)
			if in.Measurement.Verdict != cms.VerdictOK {
				t.Errorf("verdict %v (%s)", in.Measurement.Verdict, in.Signature.Reason)
			}
		})
	}
	if in := inspectBoth(t, embedded, trust, NewCache(CacheLimits{})); in.Signature.Signer == nil || in.Signature.Signer == cert {
		t.Error("an embedded signer certificate is not reported as such")
	}
}

// TestVerdictCacheOwnsItsBytes: what a cached verdict holds aliases none of
// the bytes measured first, and what a hit returns can be changed without
// changing the next hit.
func TestVerdictCacheOwnsItsBytes(t *testing.T) {
	trust := fixtureTrust(t)
	a := loadFixture(t, "counter.signed.lskel.h")
	_, cert := testutil.LskelSigner(t)
	a = signArtifact(t, a, cms.SignOptions{Scheme: cms.SchemeHornet, MapHashes: []cms.MapHash{{Index: 1, SHA256: bytes.Repeat([]byte{7}, 32)}}})
	a.Signature = withCertificate(t, a.Signature, cert)
	c := NewCache(CacheLimits{})
	first := cloneArtifact(a)
	want, err := Inspect(first, Options{Trust: trust, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	wantEnc, _ := want.Measurement.MarshalBinary()
	want.Layout = want.Layout.CloneFor(bytes.Clone(a.Data)) // first's bytes are cleared below
	wantRaw := bytes.Clone(want.Signature.Signer.Raw)
	clear(first.Signature) // the caller reuses its buffer
	got, err := Inspect(cloneArtifact(a), Options{Trust: trust, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, c, 1, 1)
	if !bytes.Equal(got.Signature.Signer.Raw, wantRaw) {
		t.Error("the cached signer certificate changed with the first caller's bytes")
	}
	got.Measurement.Signer.KeyID[0] ^= 1
	got.Measurement.Signer.CertSHA256[0] ^= 1
	got.Signature.MapHashes[0].SHA256[0] ^= 1
	got.Layout.Programs[0].Name = "changed"
	got.Layout.Calls[0].Insn = -1
	third := cloneArtifact(a)
	again, err := Inspect(third, Options{Trust: trust, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.Layout, want.Layout) {
		t.Error("changing the analysis a hit returned changed the next one")
	}
	for _, p := range again.Layout.Programs {
		if &p.Insns[0] != &third.Data[p.InsnOffset] {
			t.Errorf("program %s: instructions are not the measured artifact's bytes", p.Name)
		}
	}
	if s := c.Stats().Layouts; s.Hits != 2 || s.Misses != 1 {
		t.Errorf("analyses: %d hits, %d misses; want 2 and 1", s.Hits, s.Misses)
	}
	if enc, _ := again.Measurement.MarshalBinary(); !bytes.Equal(enc, wantEnc) {
		t.Error("changing what a hit returned changed the next measurement")
	}
	if again.Signature.MapHashes[0].SHA256[0] != 7 {
		t.Error("changing what a hit returned changed the cached map hashes")
	}
}

// TestVerdictCacheExpired: certificate validity is decided as without a
// cache, which is as the kernel decides. A trusted certificate past its
// NotAfter still verifies (the kernel checks no certificate against the
// time now, and nothing in a verdict depends on the time: see "Cached
// verdicts"); a signingTime outside the validity of the embedded signer
// certificate is refused (BADSIG), first and from the cache.
func TestVerdictCacheExpired(t *testing.T) {
	a := loadFixture(t, "counter.signed.lskel.h")
	key, expired := selfSigned(t, "expired", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
	t.Run("trusted certificate expired", func(t *testing.T) {
		sig, err := cms.Sign(a.Insns, key, expired, cms.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b := cloneArtifact(a)
		b.Signature = sig
		c := NewCache(CacheLimits{})
		in := inspectBoth(t, b, cms.NewTrustStore(expired), c)
		wantStats(t, c, 1, 1)
		if in.Measurement.Verdict != cms.VerdictOK {
			t.Errorf("verdict %v (%s), want OK as the kernel decides", in.Measurement.Verdict, in.Signature.Reason)
		}
	})
	t.Run("signed after the embedded certificate expired", func(t *testing.T) {
		sig, err := cms.Sign(a.Insns, key, expired, cms.SignOptions{Scheme: cms.SchemeHornet, SigningTime: time.Date(2022, 6, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		b := cloneArtifact(a)
		b.Signature = withCertificate(t, sig, expired)
		c := NewCache(CacheLimits{})
		in := inspectBoth(t, b, cms.NewTrustStore(expired), c)
		wantStats(t, c, 1, 1)
		if in.Measurement.Verdict != cms.VerdictBadSig || in.Accepted() {
			t.Errorf("verdict %v (%s) accepted %v, want BADSIG", in.Measurement.Verdict, in.Signature.Reason, in.Accepted())
		}
		if !strings.Contains(in.Signature.Reason, "validity") {
			t.Errorf("refused for %q, not for the signing time", in.Signature.Reason)
		}
	})
}

// TestVerdictCacheTrustStore: a verdict is used only with a trust store of
// the same identity: another store, or the same certificates in another
// order, is a miss and decides as without a cache.
func TestVerdictCacheTrustStore(t *testing.T) {
	a := loadFixture(t, "counter.signed.lskel.h")
	_, cert := testutil.LskelSigner(t)
	_, other := selfSigned(t, "other", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC))
	c := NewCache(CacheLimits{})
	steps := []struct {
		name         string
		trust        *cms.TrustStore
		verdict      cms.Verdict
		hits, misses uint64
	}{
		{"trusted", cms.NewTrustStore(cert), cms.VerdictOK, 1, 1},
		{"same certificate, another store", cms.NewTrustStore(cert), cms.VerdictOK, 3, 1},
		{"empty store", cms.NewTrustStore(), cms.VerdictUnknownKey, 4, 2},
		{"no store", nil, cms.VerdictUnknownKey, 6, 2}, // the same identity as an empty store
		{"another certificate", cms.NewTrustStore(other), cms.VerdictUnknownKey, 7, 3},
		{"both", cms.NewTrustStore(cert, other), cms.VerdictOK, 8, 4},
		{"both, other order", cms.NewTrustStore(other, cert), cms.VerdictOK, 9, 5},
	}
	for _, s := range steps {
		in := inspectBoth(t, a, s.trust, c)
		if in.Measurement.Verdict != s.verdict {
			t.Errorf("%s: verdict %v, want %v", s.name, in.Measurement.Verdict, s.verdict)
		}
		wantStats(t, c, s.hits, s.misses)
	}
}

// TestVerdictCacheTampered: once an artifact's verdict is cached, a changed
// byte of its signature, its loader or (Hornet) its data map is a miss,
// and is measured as without a cache.
func TestVerdictCacheTampered(t *testing.T) {
	trust := fixtureTrust(t)
	kernel := loadFixture(t, "counter.signed.lskel.h")
	base := loadersWithoutDataHash(t, "counter")["kernel-check"]
	h := MapHash(base.Data)
	hornet := signArtifact(t, base, hornetOpts(cms.MapHash{Index: 0, SHA256: h[:]}))
	cases := []struct {
		name    string
		a       *lskel.Artifact
		mutate  func(a *lskel.Artifact)
		verdict cms.Verdict
	}{
		{"signature tail", kernel, func(a *lskel.Artifact) { a.Signature[len(a.Signature)-1] ^= 1 }, cms.VerdictBadSig},
		{"signature length", kernel, func(a *lskel.Artifact) { a.Signature = a.Signature[:len(a.Signature)-1] }, cms.VerdictFault},
		{"loader", kernel, func(a *lskel.Artifact) { a.Insns[len(a.Insns)-4] ^= 1 }, cms.VerdictBadSig},
		{"data", kernel, func(a *lskel.Artifact) { a.Data[len(a.Data)-1] ^= 1 }, cms.VerdictOK}, // the data link breaks
		{"hornet data", hornet, func(a *lskel.Artifact) { a.Data[len(a.Data)-1] ^= 1 }, cms.VerdictUnexpected},
		{"hornet loader", hornet, func(a *lskel.Artifact) { a.Insns[len(a.Insns)-4] ^= 1 }, cms.VerdictBadSig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache(CacheLimits{})
			if in := inspectBoth(t, tc.a, trust, c); in.Measurement.Verdict != cms.VerdictOK {
				t.Fatalf("untampered: verdict %v", in.Measurement.Verdict)
			}
			b := cloneArtifact(tc.a)
			tc.mutate(b)
			uncached, err := Inspect(cloneArtifact(b), Options{Trust: trust})
			if err != nil {
				t.Fatal(err)
			}
			in, err := Inspect(b, Options{Trust: trust, Cache: c})
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "data" {
				wantStats(t, c, 2, 1) // the signature covers the loader only
			} else {
				wantStats(t, c, 1, 2)
			}
			wantAnalyses := uint64(2) // a changed loader or blob is analysed again
			if strings.HasPrefix(tc.name, "signature") {
				wantAnalyses = 1
			}
			if s := c.Stats().Layouts; s.Misses != wantAnalyses {
				t.Errorf("analyses: %d misses, want %d", s.Misses, wantAnalyses)
			}
			if in.Measurement.Verdict != tc.verdict || in.Accepted() {
				t.Errorf("tampered: verdict %v (%s) accepted %v, want %v", in.Measurement.Verdict, in.Signature.Reason, in.Accepted(), tc.verdict)
			}
			got, _ := in.Measurement.MarshalBinary()
			want, _ := uncached.Measurement.MarshalBinary()
			if !bytes.Equal(got, want) || !reflect.DeepEqual(in.Signature, uncached.Signature) || !reflect.DeepEqual(in.Layout, uncached.Layout) {
				t.Error("the tampered artifact measures differently with the cache")
			}
		})
	}
}

// hornetVariants returns n artifacts of one loader, each signed (Hornet)
// with another signing time: n signatures, n cache entries.
func hornetVariants(t *testing.T, n int) []*lskel.Artifact {
	t.Helper()
	a := loadFixture(t, "counter.signed.lskel.h")
	out := make([]*lskel.Artifact, n)
	for i := range out {
		out[i] = signArtifact(t, a, cms.SignOptions{Scheme: cms.SchemeHornet, SigningTime: time.Date(2027, 1, 1, 0, 0, i, 0, time.UTC)})
	}
	return out
}

// TestVerdictCacheBound: the cache never holds more entries or more
// (estimated) bytes than its limits, drops the least recently used entry
// first, and keeps no verdict larger than its byte limit.
func TestVerdictCacheBound(t *testing.T) {
	trust := fixtureTrust(t)
	arts := hornetVariants(t, 6)
	measure := func(c *Cache, i int) {
		t.Helper()
		if _, err := Inspect(arts[i], Options{Trust: trust, Cache: c}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("entries", func(t *testing.T) {
		c := NewCache(CacheLimits{Entries: 3}) // the loader's analysis and two verdicts
		for i := range arts {
			measure(c, i)
			if s := c.Stats(); s.Entries > 3 {
				t.Fatalf("%d entries, limit 3", s.Entries)
			}
		}
		wantStats(t, c, 0, 6)
		measure(c, 5) // kept
		measure(c, 4) // kept
		measure(c, 3) // dropped: a miss, which drops 5
		measure(c, 5)
		wantStats(t, c, 2, 8)
		if s := c.Stats().Layouts; s.Hits != 9 || s.Misses != 1 {
			t.Errorf("analyses: %d hits, %d misses; want 9 and 1 (one loader, always the most recently used)", s.Hits, s.Misses)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		probe := NewCache(CacheLimits{})
		unsigned := *arts[0]
		unsigned.Signature, unsigned.ExclHash = nil, nil
		if _, err := Inspect(&unsigned, Options{Cache: probe}); err != nil {
			t.Fatal(err)
		}
		layout := probe.Stats().Bytes
		measure(probe, 0)
		verdict := probe.Stats().Bytes - layout
		if layout <= entryOverhead || verdict <= entryOverhead {
			t.Fatalf("entries are estimated at %d (analysis) and %d (verdict) bytes", layout, verdict)
		}
		c := NewCache(CacheLimits{Bytes: layout + 2*verdict + verdict/2})
		for i := range arts {
			measure(c, i)
			if s := c.Stats(); s.Bytes > c.limits.Bytes || s.Entries > 3 {
				t.Fatalf("%d entries of %d bytes, limit %d bytes", s.Entries, s.Bytes, c.limits.Bytes)
			}
		}
		small := NewCache(CacheLimits{Bytes: min(layout, verdict) - 1})
		measure(small, 0)
		measure(small, 0)
		if s := small.Stats(); s.Entries != 0 || s.Bytes != 0 || s.Verdicts.Hits != 0 || s.Layouts.Hits != 0 {
			t.Errorf("an entry larger than the limit was kept: %+v", s)
		}
	})
}

// TestVerdictCacheConcurrent measures artifacts from many goroutines with
// one small cache (run with -race): every measurement is the uncached one.
func TestVerdictCacheConcurrent(t *testing.T) {
	trust := fixtureTrust(t)
	arts := hornetVariants(t, 4)
	want := make([][]byte, len(arts))
	for i, a := range arts {
		in, err := Inspect(a, Options{Trust: trust})
		if err != nil {
			t.Fatal(err)
		}
		want[i], _ = in.Measurement.MarshalBinary()
	}
	c := NewCache(CacheLimits{Entries: 2})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for k := range 20 {
				i := (g + k) % len(arts)
				in, err := Inspect(arts[i], Options{Trust: trust, Cache: c})
				if err != nil {
					errs <- err
					return
				}
				if enc, _ := in.Measurement.MarshalBinary(); !bytes.Equal(enc, want[i]) {
					errs <- fmt.Errorf("artifact %d measures differently from goroutine %d", i, g)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := c.Stats(); s.Verdicts.Hits+s.Verdicts.Misses != 160 || s.Entries > 2 {
		t.Errorf("stats %+v after 160 measurements with a limit of 2 entries", s)
	}
}
