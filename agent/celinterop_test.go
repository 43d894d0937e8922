package agent_test

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

var updateInterop = flag.Bool("update-celinterop", false, "rewrite internal/celinterop/testdata from an agent on swtpm")

// interopPCRs is internal/celinterop/testdata/pcrs.json: the TPM's PCR
// values in every bank after the agent's log was written.
type interopPCRs struct {
	PCR     int               `json:"pcr"`
	Records int               `json:"records"`
	Banks   map[string]string `json:"banks"` // sha1, sha256, sha384, sha512 → hex
}

func interopDir(tb testing.TB) string {
	return filepath.Join(testutil.RepoRoot(tb), "internal", "celinterop", "testdata")
}

// TestCELInteropCapture keeps the test data of the go-eventlog
// cross-check (internal/celinterop, a module of its own) honest. With
// -update-celinterop it writes a real agent's event log (on swtpm, all four
// banks allocated: a signed and an unsigned load, measured and refused
// without kernel access) and the PCR values the TPM holds afterwards, read
// by a fresh connection once the agent has closed. Without it, it checks
// that the committed log decodes with this module's cel package and
// replays to the committed values in every bank.
func TestCELInteropCapture(t *testing.T) {
	dir := interopDir(t)
	if *updateInterop {
		sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
		cfg := config(t)
		cfg.TPM, cfg.NoKernel, cfg.AllowUnsigned = sw.Spec(), true, true
		a, err := agent.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, signed := range []bool{true, false} {
			a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", signed)}) // refused: no kernel
		}
		recs, err := a.Records(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := cel.Encode(recs)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := tpm.Open(context.Background(), sw.Spec())
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		pcr, err := dev.ReadPCR(14)
		if err != nil {
			t.Fatal(err)
		}
		out := interopPCRs{PCR: 14, Records: len(recs), Banks: map[string]string{}}
		for h, v := range pcr {
			out.Banks[cel.BankName(h)] = hex.EncodeToString(v)
		}
		js, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "agent-swtpm.cel"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pcrs.json"), append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	b, err := os.ReadFile(filepath.Join(dir, "agent-swtpm.cel"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, "pcrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want interopPCRs
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	recs, err := cel.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != want.Records || len(want.Banks) != 4 {
		t.Fatalf("%d records, %d banks; want %d records, 4 banks", len(recs), len(want.Banks), want.Records)
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		v := make([]byte, h.Size())
		for i := range recs {
			if err := recs[i].VerifyDigests(); err != nil {
				t.Fatal(err)
			}
			var digest []byte
			for _, dg := range recs[i].Digests {
				if dg.Hash == h {
					digest = dg.Value
				}
			}
			if digest == nil {
				t.Fatalf("record %d has no %s digest", recs[i].RecNum, cel.BankName(h))
			}
			d := h.New()
			d.Write(v)
			d.Write(digest)
			v = d.Sum(nil)
		}
		if got := hex.EncodeToString(v); got != want.Banks[cel.BankName(h)] {
			t.Errorf("%s: replay %s, tpm %s", cel.BankName(h), got, want.Banks[cel.BankName(h)])
		}
	}
}
