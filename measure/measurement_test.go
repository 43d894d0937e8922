package measure

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure/cms"
)

var update = flag.Bool("update", false, "rewrite golden files")

var fixtureHeaders = []string{
	"counter.lskel.h", "counter.signed.lskel.h",
	"pair.lskel.h", "pair.signed.lskel.h",
	"rocfg.lskel.h", "rocfg.signed.lskel.h",
}

func loadFixture(t testing.TB, name string) *lskel.Artifact {
	t.Helper()
	src, err := os.ReadFile(testutil.LskelFile(t, "headers/"+name))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lskel.Load(src)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return a
}

func fixtureTrust(t testing.TB) *cms.TrustStore {
	t.Helper()
	ts, err := cms.LoadTrust(testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestInspectFixtures(t *testing.T) {
	trust := fixtureTrust(t)
	for _, name := range fixtureHeaders {
		t.Run(name, func(t *testing.T) {
			a := loadFixture(t, name)
			insp, err := Inspect(a, Options{Trust: trust})
			if err != nil {
				t.Fatal(err)
			}
			m := insp.Measurement
			signed := strings.Contains(name, ".signed.")
			if m.LoaderSHA256 != sha256.Sum256(a.Insns) {
				t.Errorf("loader digest is not SHA-256 of the insns")
			}
			if len(m.Programs) == 0 {
				t.Errorf("no programs found in the data blob")
			}
			if !signed {
				if m.Scheme != SchemeUnsigned || m.Verdict != cms.VerdictUnsigned || insp.Accepted() {
					t.Errorf("unsigned: scheme %v verdict %v accepted %v", m.Scheme, m.Verdict, insp.Accepted())
				}
				if m.ExclLink != LinkAbsent || m.DataLink != LinkAbsent || m.Signer != nil {
					t.Errorf("unsigned: links %v/%v signer %v", m.ExclLink, m.DataLink, m.Signer)
				}
				return
			}
			if m.Scheme != SchemeKernel || m.Verdict != cms.VerdictOK || !insp.Accepted() {
				t.Fatalf("signed: scheme %v verdict %v (%s) accepted %v problems %q",
					m.Scheme, m.Verdict, insp.Signature.Reason, insp.Accepted(), insp.Problems())
			}
			if m.ExclLink != LinkHolds || m.DataLink != LinkHolds {
				t.Errorf("signed: links %v/%v, want holds/holds", m.ExclLink, m.DataLink)
			}
			if m.Signer == nil || hex.EncodeToString(m.Signer.CertSHA256) != "f8dbdbb8a9f82452b2a27c9f80bed2349d817a2d8cba7d68bc1bb50a68248f2d" ||
				hex.EncodeToString(m.Signer.KeyID) != "de0e7eb4aae9b5c8b36b02283248e0f06a4140c3" {
				t.Errorf("signer %+v, want the fixture certificate", m.Signer)
			}
		})
	}
}

// TestInspectTampered flips one byte in each part of a signed artifact and
// checks that the verdict and the chain links name the part.
func TestInspectTampered(t *testing.T) {
	trust := fixtureTrust(t)
	cases := []struct {
		name       string
		mutate     func(a *lskel.Artifact)
		verdict    cms.Verdict
		excl, data Link
	}{
		{"insns", func(a *lskel.Artifact) { a.Insns[len(a.Insns)-4] ^= 1 }, cms.VerdictBadSig, LinkBroken, LinkHolds},
		{"data", func(a *lskel.Artifact) { a.Data[len(a.Data)-1] ^= 1 }, cms.VerdictOK, LinkHolds, LinkBroken},
		{"excl hash", func(a *lskel.Artifact) { a.ExclHash[0] ^= 1 }, cms.VerdictOK, LinkBroken, LinkHolds},
		{"signature tail", func(a *lskel.Artifact) { a.Signature[len(a.Signature)-1] ^= 1 }, cms.VerdictBadSig, LinkHolds, LinkHolds},
		{"unsigned", func(a *lskel.Artifact) { a.Signature, a.ExclHash = nil, nil }, cms.VerdictUnsigned, LinkAbsent, LinkHolds},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := loadFixture(t, "counter.signed.lskel.h")
			tc.mutate(a)
			insp, err := Inspect(a, Options{Trust: trust})
			if err != nil {
				t.Fatal(err)
			}
			m := insp.Measurement
			if m.Verdict != tc.verdict || m.ExclLink != tc.excl || m.DataLink != tc.data {
				t.Errorf("verdict %v excl %v data %v; want %v %v %v", m.Verdict, m.ExclLink, m.DataLink, tc.verdict, tc.excl, tc.data)
			}
			if insp.Accepted() {
				t.Errorf("tampered artifact accepted")
			}
			if len(insp.Problems()) == 0 {
				t.Errorf("no problem named")
			}
		})
	}
}

func TestInspectUnknownKey(t *testing.T) {
	insp, err := Inspect(loadFixture(t, "rocfg.signed.lskel.h"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if insp.Measurement.Verdict != cms.VerdictUnknownKey || insp.Accepted() {
		t.Errorf("verdict %v accepted %v with an empty keyring", insp.Measurement.Verdict, insp.Accepted())
	}
	if s := insp.Measurement.Signer; s == nil || s.ID != "skid:de0e7eb4aae9b5c8b36b02283248e0f06a4140c3" || s.CertSHA256 != nil {
		t.Errorf("signer %+v: want the signer id only", s)
	}
}

func TestMeasurementRoundTrip(t *testing.T) {
	trust := fixtureTrust(t)
	for _, name := range fixtureHeaders {
		insp, err := Inspect(loadFixture(t, name), Options{Trust: trust})
		if err != nil {
			t.Fatal(err)
		}
		m := insp.Measurement
		m.Requester = &Requester{UID: 0, GID: 0, PID: 42, Exe: "/usr/bin/loader", ExeSHA256: make([]byte, 32)}
		m.LoaderContextSHA256 = bytes.Repeat([]byte{7}, 32)
		m.BootTimeNS = 123456789
		m.KernelCheck = KernelCheckUnavailable
		enc, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseMeasurement(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(&m, got); diff != "" {
			t.Errorf("%s: round trip (-want +got):\n%s", name, diff)
		}
		again, err := got.MarshalBinary()
		if err != nil || !bytes.Equal(enc, again) {
			t.Errorf("%s: re-encoding differs (err %v)", name, err)
		}
	}
}

// TestMeasurementGolden pins the canonical bytes of every fixture's
// measurement: a change to the encoding or to what is measured shows here.
func TestMeasurementGolden(t *testing.T) {
	trust := fixtureTrust(t)
	for _, name := range fixtureHeaders {
		insp, err := Inspect(loadFixture(t, name), Options{Trust: trust})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := insp.Measurement.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".lskel.h")+".measurement.golden")
		got := hex.Dump(enc)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("%s: measurement differs from golden (-want +got):\n%s", name, diff)
		}
	}
}

func TestParseMeasurementRejects(t *testing.T) {
	insp, err := Inspect(loadFixture(t, "pair.signed.lskel.h"), Options{Trust: fixtureTrust(t)})
	if err != nil {
		t.Fatal(err)
	}
	good, err := insp.Measurement.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"bad magic": append([]byte("XPFM"), good[4:]...),
		"version 3": append(append([]byte{}, good[:4]...), append([]byte{0, 3}, good[6:]...)...),
		// A version 1 measurement carries no kernel tags: these bytes
		// (with tags) are not one.
		"version 1 with tags": append(append([]byte{}, good[:4]...), append([]byte{0, 1}, good[6:]...)...),
		"truncated":           good[:len(good)-1],
		"trailing":            append(append([]byte{}, good...), 0),
		"unknown tag":         append(append([]byte{}, good...), 200, 0, 0, 0, 0),
		"dup tag":             append(append([]byte{}, good[:6]...), append([]byte{1, 0, 0, 0, 1, 2}, good[6:]...)...),
		"bad scheme":          append(append([]byte{}, good[:6]...), append([]byte{1, 0, 0, 0, 1, 9}, good[12:]...)...),
		"huge length":         append(append([]byte{}, good[:6]...), 1, 0xff, 0xff, 0xff, 0xff),
	}
	for name, b := range cases {
		if _, err := ParseMeasurement(b); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "malformed measurement") {
			t.Errorf("%s: error %q does not say what is wrong", name, err)
		}
	}
}

// TestInspectLoad checks what a load adds to the measurement: the context
// built for the layout's shape and its digest, the requester, the boot time
// and whether the signature goes to the kernel.
func TestInspectLoad(t *testing.T) {
	trust := fixtureTrust(t)
	req := &Requester{UID: 1000, GID: 1000, PID: 42, Exe: "/usr/bin/loader"}
	cases := []struct {
		file     string
		verifies bool
		want     KernelCheck
	}{
		{"pair.signed.lskel.h", true, KernelCheckVerified},
		{"pair.signed.lskel.h", false, KernelCheckUnavailable},
		{"pair.lskel.h", true, KernelCheckNotSubmitted},
	}
	for _, c := range cases {
		var gotMaps, gotProgs int
		build := func(nrMaps, nrProgs int) []byte {
			gotMaps, gotProgs = nrMaps, nrProgs
			return []byte{byte(nrMaps), byte(nrProgs)}
		}
		in, err := Inspect(loadFixture(t, c.file), Options{Trust: trust,
			Load: &Load{Requester: req, Context: build, BootTimeNS: 7, KernelVerifies: c.verifies}})
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		m := in.Measurement
		wantMaps, wantProgs := in.Layout.CtxShape()
		sum := sha256.Sum256([]byte{byte(wantMaps), byte(wantProgs)})
		switch {
		case gotMaps != wantMaps || gotProgs != wantProgs || wantProgs != 2:
			t.Errorf("%s: context built for %d maps, %d programs; layout has %d, %d", c.file, gotMaps, gotProgs, wantMaps, wantProgs)
		case in.LoaderContext.Maps != wantMaps || in.LoaderContext.Programs != wantProgs || len(in.LoaderContext.Bytes) != 2:
			t.Errorf("%s: loader context %+v", c.file, in.LoaderContext)
		case !bytes.Equal(m.LoaderContextSHA256, sum[:]):
			t.Errorf("%s: context digest %x, want %x", c.file, m.LoaderContextSHA256, sum)
		case m.Requester != req || m.BootTimeNS != 7:
			t.Errorf("%s: requester %+v, boot time %d", c.file, m.Requester, m.BootTimeNS)
		case m.KernelCheck != c.want || in.SubmitSignature() != (c.want == KernelCheckVerified):
			t.Errorf("%s: kernel check %v (submit %v), want %v", c.file, m.KernelCheck, in.SubmitSignature(), c.want)
		}
	}
	_, err := Inspect(loadFixture(t, "pair.lskel.h"), Options{Load: &Load{Context: func(int, int) []byte { return nil }}})
	if !errors.Is(err, ErrNotAnalyzable) {
		t.Errorf("no context: error %v, want ErrNotAnalyzable", err)
	}
	in, err := Inspect(loadFixture(t, "pair.signed.lskel.h"), Options{Trust: trust})
	if err != nil || in.Measurement.KernelCheck != KernelCheckUnknown || in.Measurement.LoaderContextSHA256 != nil || in.LoaderContext.Bytes != nil {
		t.Errorf("outside a load: %v, kernel check %v, context %x", err, in.Measurement.KernelCheck, in.Measurement.LoaderContextSHA256)
	}
}

// TestParseVersion1: a measurement written before the kernel tag was
// recorded (format version 1, bytes kept in testdata/v1) still parses, and
// says its tags were not measured.
func TestParseVersion1(t *testing.T) {
	b, err := os.ReadFile("testdata/v1/counter.signed.measurement.bin")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMeasurement(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Programs) != 1 || m.Programs[0].Name != "count_sys_enter" {
		t.Fatalf("programs %+v", m.Programs)
	}
	if p := m.Programs[0]; p.TagKnown() || p.TagUnpredictable != TagNotMeasured {
		t.Errorf("version 1 program %+v: want its tag not measured", p)
	}
}
