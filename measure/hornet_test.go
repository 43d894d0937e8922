package measure

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// loadersWithoutDataHash are, for one fixture, real loaders that carry no
// data hash of their own: the unsigned header's (bpftool gen skeleton -L,
// which also takes map sizes and initial values from the host), and the
// signed header's without its hash prologue (the loader libbpf debb5e82
// and later generate).
func loadersWithoutDataHash(t *testing.T, name string) map[string]*lskel.Artifact {
	t.Helper()
	unsigned := loadFixture(t, name+".lskel.h")
	signed := loadFixture(t, name+".signed.lskel.h")
	return map[string]*lskel.Artifact{
		"unchecked":    {Name: unsigned.Name, Insns: unsigned.Insns, Data: unsigned.Data},
		"kernel-check": {Name: signed.Name, Insns: testutil.WithoutHashPrologue(t, signed.Insns), Data: signed.Data},
	}
}

// signArtifact signs a copy of a's loader as bpfattest sign does, with the
// fixtures' TEST-ONLY key.
func signArtifact(t *testing.T, a *lskel.Artifact, opts cms.SignOptions) *lskel.Artifact {
	t.Helper()
	key, cert := testutil.LskelSigner(t)
	sig, err := cms.Sign(a.Insns, key, cert, opts)
	if err != nil {
		t.Fatal(err)
	}
	excl := sha256.Sum256(a.Insns)
	out := *a
	out.Signature, out.ExclHash = sig, excl[:]
	return &out
}

func hornetOpts(maps ...cms.MapHash) cms.SignOptions {
	return cms.SignOptions{Scheme: cms.SchemeHornet, MapHashes: maps}
}

// TestInspectHornetWithoutDataHash: a loader without an embedded data hash,
// signed with the Hornet scheme whose map-hash attribute carries the data
// map's hash for fd_array index 0, is accepted: the data link holds by the
// signed map hash. Both loader shapes, all three fixtures.
func TestInspectHornetWithoutDataHash(t *testing.T) {
	trust := fixtureTrust(t)
	for _, name := range []string{"counter", "pair", "rocfg"} {
		for shape, a := range loadersWithoutDataHash(t, name) {
			t.Run(name+"/"+shape, func(t *testing.T) {
				h := MapHash(a.Data)
				signed := signArtifact(t, a, hornetOpts(cms.MapHash{Index: 0, SHA256: h[:]}))
				insp, err := Inspect(signed, Options{Trust: trust})
				if err != nil {
					t.Fatal(err)
				}
				m := insp.Measurement
				if m.EmbeddedDataHash != nil || insp.Layout.Generation == lskel.GenerationLoaderCheck {
					t.Fatalf("loader carries a data hash (generation %v)", insp.Layout.Generation)
				}
				if m.Scheme != SchemeHornet || m.Verdict != cms.VerdictOK || m.ExclLink != LinkHolds || m.DataLink != LinkHolds {
					t.Errorf("scheme %v verdict %v (%s) links %v/%v, want hornet OK holds/holds",
						m.Scheme, m.Verdict, insp.Signature.Reason, m.ExclLink, m.DataLink)
				}
				if !insp.Accepted() || len(insp.Problems()) != 0 {
					t.Errorf("accepted %v, problems %q", insp.Accepted(), insp.Problems())
				}
				if got := m.DataLinkBasis(); !strings.Contains(got, "Hornet signed map hash") {
					t.Errorf("data link basis %q", got)
				}
				// The measurement says the same after the round trip.
				b, err := m.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				back, err := ParseMeasurement(b)
				if err != nil || back.DataLink != LinkHolds || back.Scheme != SchemeHornet || back.DataLinkBasis() != m.DataLinkBasis() {
					t.Errorf("round trip: %v %+v", err, back)
				}
			})
		}
	}
}

// TestInspectHornetRefusals: what stays refused for a loader without an
// embedded data hash. Signatures that Hornet's check does not let bind the
// data map are not accepted; those it finds tampered (a map hash that does
// not match, no map at a signed index) are tampered.
func TestInspectHornetRefusals(t *testing.T) {
	trust := fixtureTrust(t)
	other := sha256.Sum256([]byte("another map"))
	cases := []struct {
		name     string
		sign     func(t *testing.T, a *lskel.Artifact) *lskel.Artifact
		trust    bool
		scheme   Scheme
		verdict  cms.Verdict
		link     Link
		problem  string // substring of a problem
		tampered bool   // BADSIG, FAULT, UNEXPECTED or a broken link
	}{
		{name: "kernel scheme", trust: true, scheme: SchemeKernel, verdict: cms.VerdictOK, link: LinkAbsent,
			sign:    func(t *testing.T, a *lskel.Artifact) *lskel.Artifact { return signArtifact(t, a, cms.SignOptions{}) },
			problem: "carries no data hash"},
		{name: "hornet without map-hash attribute (PARTIALSIG)", trust: true, scheme: SchemeKernel, verdict: cms.VerdictOK, link: LinkAbsent,
			sign:    func(t *testing.T, a *lskel.Artifact) *lskel.Artifact { return signArtifact(t, a, hornetOpts()) },
			problem: "carries no data hash"},
		{name: "index 0 skipped", trust: true, scheme: SchemeHornet, verdict: cms.VerdictOK, link: LinkAbsent,
			sign: func(t *testing.T, a *lskel.Artifact) *lskel.Artifact {
				return signArtifact(t, a, hornetOpts(cms.MapHash{Index: 0}))
			},
			problem: "no hash for fd_array index 0"},
		{name: "index 1 only", trust: true, scheme: SchemeHornet, verdict: cms.VerdictFault, link: LinkAbsent, tampered: true,
			sign: func(t *testing.T, a *lskel.Artifact) *lskel.Artifact {
				h := MapHash(a.Data)
				return signArtifact(t, a, hornetOpts(cms.MapHash{Index: 1, SHA256: h[:]}))
			},
			problem: "no map at fd_array index 1"},
		{name: "index 0 and 1", trust: true, scheme: SchemeHornet, verdict: cms.VerdictFault, link: LinkAbsent, tampered: true,
			sign: func(t *testing.T, a *lskel.Artifact) *lskel.Artifact {
				h := MapHash(a.Data)
				return signArtifact(t, a, hornetOpts(cms.MapHash{Index: 0, SHA256: h[:]}, cms.MapHash{Index: 1, SHA256: h[:]}))
			},
			problem: "no map at fd_array index 1"},
		{name: "wrong hash for index 0", trust: true, scheme: SchemeHornet, verdict: cms.VerdictUnexpected, link: LinkBroken, tampered: true,
			sign: func(t *testing.T, a *lskel.Artifact) *lskel.Artifact {
				return signArtifact(t, a, hornetOpts(cms.MapHash{Index: 0, SHA256: other[:]}))
			},
			problem: "Hornet reports UNEXPECTED"},
		{name: "data changed after signing", trust: true, scheme: SchemeHornet, verdict: cms.VerdictUnexpected, link: LinkBroken, tampered: true,
			sign: func(t *testing.T, a *lskel.Artifact) *lskel.Artifact {
				h := MapHash(a.Data)
				s := signArtifact(t, a, hornetOpts(cms.MapHash{Index: 0, SHA256: h[:]}))
				s.Data = append([]byte{}, s.Data...)
				s.Data[len(s.Data)-1] ^= 1
				return s
			},
			problem: "Hornet reports UNEXPECTED"},
		{name: "unknown signer", trust: false, scheme: SchemeHornet, verdict: cms.VerdictUnknownKey, link: LinkAbsent,
			sign: func(t *testing.T, a *lskel.Artifact) *lskel.Artifact {
				h := MapHash(a.Data)
				return signArtifact(t, a, hornetOpts(cms.MapHash{Index: 0, SHA256: h[:]}))
			},
			problem: "UNKNOWNKEY"},
	}
	for _, tc := range cases {
		for shape, a := range loadersWithoutDataHash(t, "counter") {
			if tc.scheme == SchemeKernel && shape == "kernel-check" {
				continue // a kernel-scheme signature over this shape is kernel-bound (TestInspectFixtures' territory)
			}
			t.Run(tc.name+"/"+shape, func(t *testing.T) {
				opts := Options{}
				if tc.trust {
					opts.Trust = trust
				}
				insp, err := Inspect(tc.sign(t, a), opts)
				if err != nil {
					t.Fatal(err)
				}
				m := insp.Measurement
				if m.Scheme != tc.scheme || m.Verdict != tc.verdict || m.DataLink != tc.link {
					t.Errorf("scheme %v verdict %v (%s) data link %v, want %v %v %v",
						m.Scheme, m.Verdict, insp.Signature.Reason, m.DataLink, tc.scheme, tc.verdict, tc.link)
				}
				if insp.Accepted() {
					t.Fatal("accepted")
				}
				if p := strings.Join(insp.Problems(), "; "); !strings.Contains(p, tc.problem) {
					t.Errorf("problems %q, want one naming %q", p, tc.problem)
				}
				tampered := m.Verdict == cms.VerdictBadSig || m.Verdict == cms.VerdictFault || m.Verdict == cms.VerdictUnexpected ||
					m.ExclLink == LinkBroken || m.DataLink == LinkBroken
				if tampered != tc.tampered {
					t.Errorf("tampered %v, want %v", tampered, tc.tampered)
				}
			})
		}
	}
}

// TestHornetDataLink covers the rules of hornetDataLink with results no
// signer produces (cms.Sign refuses repeated indexes) and loaders that use
// other maps.
func TestHornetDataLink(t *testing.T) {
	data := sha256.Sum256([]byte("data map"))
	other := sha256.Sum256([]byte("other"))
	h := func(i uint8, d []byte) cms.MapHash { return cms.MapHash{Index: i, SHA256: d} }
	ok := func(hs ...cms.MapHash) cms.Result { return cms.Result{Verdict: cms.VerdictOK, MapHashes: hs} }
	cases := []struct {
		name    string
		sig     cms.Result
		used    []int
		want    Link
		problem string
	}{
		{"covers the data map", ok(h(0, data[:])), []int{0}, LinkHolds, ""},
		{"skipped entries do not count", ok(h(0, data[:]), h(1, nil), h(5, nil)), []int{0}, LinkHolds, ""},
		{"index 0 twice: run refused", ok(h(0, data[:]), h(0, data[:])), []int{0}, LinkAbsent, "2 hashes"},
		{"index 0 skipped", ok(h(0, nil)), []int{0}, LinkAbsent, "no hash for fd_array index 0"},
		{"loader uses no map", ok(h(0, data[:])), nil, LinkAbsent, "uses no map"},
		{"loader uses a map by fd", ok(h(0, data[:])), []int{-1, 0}, LinkAbsent, "[-1 0]"},
		{"loader uses fd_array[1]", ok(h(0, data[:])), []int{0, 1}, LinkAbsent, "[0 1]"},
		{"wrong hash for index 0", cms.Result{Verdict: cms.VerdictUnexpected, MapHashes: []cms.MapHash{h(0, other[:])}}, []int{0}, LinkBroken, "UNEXPECTED"},
		{"no map at index 1", cms.Result{Verdict: cms.VerdictFault, MapHashes: []cms.MapHash{h(0, data[:]), h(1, data[:])}}, []int{0}, LinkAbsent, ""},
		{"no attribute", cms.Result{Verdict: cms.VerdictPartialSig}, []int{0}, LinkAbsent, ""},
		{"bad signature", cms.Result{Verdict: cms.VerdictBadSig}, []int{0}, LinkAbsent, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, problem := hornetDataLink(tc.sig, tc.used, data)
			if got != tc.want || !strings.Contains(problem, tc.problem) || (tc.problem == "") != (problem == "") {
				t.Errorf("link %v problem %q, want %v and a problem naming %q", got, problem, tc.want, tc.problem)
			}
		})
	}
}
