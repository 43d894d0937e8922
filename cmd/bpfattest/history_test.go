package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/verifier"
)

// TestVerifyHistoryCLI: a refused load and a program loaded and released
// behind the agent's back are in verify's verdict, in JSON and in the text
// for people, with the reason and the program; a policy that bounds
// refusals fails the host for it.
func TestVerifyHistoryCLI(t *testing.T) {
	a := spawnAgent(t, "--trust", testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem"))
	src, err := os.ReadFile(testutil.LskelFile(t, "headers/counter.signed.lskel.h"))
	if err != nil {
		t.Fatal(err)
	}
	art, err := lskel.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	art.Data[len(art.Data)/2] ^= 1
	bundle, err := art.MarshalBundle()
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.bundle")
	if err := os.WriteFile(tampered, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := runLoad(t.Context(), []string{tampered, "--socket", a.socket}, &stdout, &stderr); code != exitFailed {
		t.Fatalf("tampered load: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	p, id := loadNamed(t, ebpf.SocketFilter, "passing_by")
	p.Close()

	policy := writeTemp(t, "policy.yaml", signedPolicy+"max_refused_loads: 0\n")
	code, v, errs := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--tofu")
	if code != exitNonCompliant || v.History == nil {
		t.Fatalf("exit %d, verdict %+v\n%s", code, v, errs)
	}
	h := v.History
	if len(h.Refused) != 1 || !strings.Contains(h.Refused[0].Reason, "tampered artifact") || h.Refused[0].RequesterUID == nil {
		t.Errorf("refused loads: %+v", h.Refused)
	}
	seen := slices.ContainsFunc(h.Transient, func(tr verifier.Transient) bool { return tr.ID == id }) ||
		slices.ContainsFunc(h.Unmeasured, func(u verifier.Unmeasured) bool { return u.ID == id && u.Gone })
	if !seen {
		t.Errorf("program %d that came and went is not in the history: %+v %+v", id, h.Transient, h.Unmeasured)
	}
	if !slices.ContainsFunc(v.Violations, func(x verifier.Violation) bool { return x.Rule == "max_refused_loads" }) {
		t.Errorf("violations %+v: want max_refused_loads", v.Violations)
	}
	if v.TPMKind != "simulator" || v.AKProvenance != "simulator" || v.Observer != "events" {
		t.Errorf("tpm %q provenance %q observer %q", v.TPMKind, v.AKProvenance, v.Observer)
	}

	stdout.Reset()
	stderr.Reset()
	runVerify(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--policy", policy, "--tofu"}, &stdout, &stderr)
	for _, want := range []string{"history:", "1 load(s) refused by the agent", "REFUSED counter_lskel", "max_refused_loads"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text verdict lacks %q:\n%s", want, stdout.String())
		}
	}
}
