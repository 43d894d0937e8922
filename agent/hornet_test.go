package agent_test

import (
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// hornetBundle signs a loader without an embedded data hash with the Hornet
// scheme and the given map hashes (nil: the data map's hash at fd_array
// index 0), as `bpfattest sign --scheme hornet` does, and returns the
// bundle. The loader is the unsigned fixture header's ("unchecked") or the
// signed one's without its hash prologue ("kernel-check", libbpf debb5e82).
func hornetBundle(t *testing.T, name, shape string, maps []cms.MapHash) []byte {
	t.Helper()
	art, err := lskel.Load(header(t, name, shape == "kernel-check"))
	if err != nil {
		t.Fatal(err)
	}
	if shape == "kernel-check" {
		art.Insns = testutil.WithoutHashPrologue(t, art.Insns)
	}
	if maps == nil {
		h := measure.MapHash(art.Data)
		maps = []cms.MapHash{{Index: 0, SHA256: h[:]}}
	}
	key, cert := testutil.LskelSigner(t)
	sig, err := cms.Sign(art.Insns, key, cert, cms.SignOptions{Scheme: cms.SchemeHornet, MapHashes: maps})
	if err != nil {
		t.Fatal(err)
	}
	excl := sha256.Sum256(art.Insns)
	art.Signature, art.ExclHash = sig, excl[:]
	b, err := art.MarshalBundle()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoadHornetWithoutDataHash: the agent's default policy loads a loader
// without an embedded data hash when its Hornet signature's map-hash
// attribute covers the data map (fd_array index 0): the measurement says
// hornet, OK and a data link that holds, the programs are created and run.
func TestLoadHornetWithoutDataHash(t *testing.T) {
	a := newAgent(t, config(t))
	for _, name := range []string{"counter", "pair", "rocfg"} {
		for _, shape := range []string{"unchecked", "kernel-check"} {
			t.Run(name+"/"+shape, func(t *testing.T) {
				resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: hornetBundle(t, name, shape, nil)})
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				m := measurementOf(t, a, resp.MeasurementRecord)
				if m.Scheme != measure.SchemeHornet || m.Verdict != cms.VerdictOK || m.DataLink != measure.LinkHolds ||
					m.ExclLink != measure.LinkHolds || m.EmbeddedDataHash != nil {
					t.Errorf("measurement: scheme %v verdict %v links %v/%v embedded %x", m.Scheme, m.Verdict, m.ExclLink, m.DataLink, m.EmbeddedDataHash)
				}
				res := resultOf(t, a, resp.ResultRecord)
				shapeWant := fixtureShape[name]
				if res.Outcome != measure.OutcomeLoaded || len(res.Programs) != len(shapeWant.progs) || len(res.Maps) != shapeWant.maps {
					t.Fatalf("result %v with %d programs and %d maps, want loaded, %d and %d",
						res.Outcome, len(res.Programs), len(res.Maps), len(shapeWant.progs), shapeWant.maps)
				}
				for i, p := range res.Programs {
					if p.Name != shapeWant.progs[i] {
						t.Errorf("program %d named %q, want %q", i, p.Name, shapeWant.progs[i])
					}
				}
				switch name {
				case "counter":
					runCounter(t, res)
				case "pair":
					runPair(t, res)
				case "rocfg":
					runRocfg(t, res)
				}
			})
		}
	}
}

// TestLoadHornetRefused: a Hornet signature that does not bind the data map
// is not accepted (a hash only for another index is FAULT, a skipped index
// 0 leaves the map unchecked, a hash that differs is UNEXPECTED); none
// reaches bpf().
func TestLoadHornetRefused(t *testing.T) {
	cfg := config(t)
	calls := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { calls++; return nil })
	a := newAgent(t, cfg)
	other := sha256.Sum256([]byte("another map"))
	for _, c := range []struct {
		name    string
		maps    []cms.MapHash
		verdict cms.Verdict
		link    measure.Link
	}{
		{"index 0 skipped", []cms.MapHash{{Index: 0}}, cms.VerdictOK, measure.LinkAbsent},
		{"index 1 only", []cms.MapHash{{Index: 1, SHA256: other[:]}}, cms.VerdictFault, measure.LinkAbsent},
		{"wrong hash", []cms.MapHash{{Index: 0, SHA256: other[:]}}, cms.VerdictUnexpected, measure.LinkBroken},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: hornetBundle(t, "counter", "unchecked", c.maps)})
			if !errors.Is(err, agent.ErrRefused) || resp == nil {
				t.Fatalf("Load: %v, want ErrRefused", err)
			}
			m := measurementOf(t, a, resp.MeasurementRecord)
			if m.Scheme != measure.SchemeHornet || m.Verdict != c.verdict || m.DataLink != c.link {
				t.Errorf("measurement: scheme %v verdict %v data link %v, want hornet %v %v", m.Scheme, m.Verdict, m.DataLink, c.verdict, c.link)
			}
			if res := resultOf(t, a, resp.ResultRecord); res.Outcome != measure.OutcomeRefused {
				t.Errorf("outcome %v, want refused", res.Outcome)
			}
		})
	}
	if calls != 0 {
		t.Errorf("%d bpf() steps for refused loads", calls)
	}
}
