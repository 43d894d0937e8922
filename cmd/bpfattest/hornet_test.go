package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/measure"
)

var hornetChain = regexp.MustCompile(`chain: Hornet signed map hash \(fd_array 0\) = data map hash +holds\n`)

// TestSignHornetWithoutDataHash: `sign --scheme hornet`, which sign
// recommends for a loader without an embedded data hash, gives an artifact
// that inspect accepts (exit 0): Hornet's signed map hash of fd_array index
// 0 covers the data map. The same loader signed with the kernel scheme is
// not accepted (exit 1). Loaders: the unsigned fixture headers' and, in a
// bundle, the signed ones' without their hash prologue (libbpf debb5e82).
func TestSignHornetWithoutDataHash(t *testing.T) {
	dir := t.TempDir()
	key, cert := fixture(t, "keys/TEST_ONLY_signing_key.pem"), fixture(t, "keys/TEST_ONLY_signing_cert.pem")
	for _, name := range []string{"counter", "pair", "rocfg"} {
		kernelCheck := readArtifact(t, fixture(t, "headers/"+name+".signed.lskel.h"))
		kernelCheck.Insns = testutil.WithoutHashPrologue(t, kernelCheck.Insns)
		kernelCheck.Signature, kernelCheck.ExclHash = nil, nil
		b, err := kernelCheck.MarshalBundle()
		if err != nil {
			t.Fatal(err)
		}
		kcPath := filepath.Join(dir, name+".kernel-check.bundle")
		if err := os.WriteFile(kcPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for shape, in := range map[string]string{"unchecked": fixture(t, "headers/"+name+".lskel.h"), "kernel-check": kcPath} {
			t.Run(name+"/"+shape, func(t *testing.T) {
				out := filepath.Join(dir, name+"."+shape+".hornet.bundle")
				code, _, errs := run(t, "sign", "--key", key, "--cert", cert, "--scheme", "hornet", "--out", out, in)
				if code != exitOK || errs != "" {
					t.Fatalf("sign --scheme hornet: exit %d, stderr %q", code, errs)
				}
				data := readArtifact(t, out).Data
				h := measure.MapHash(data)
				code, r := inspectJSON(t, out, "--trust", cert)
				if code != exitOK || !r.Accepted || r.Scheme != measure.SchemeHornet || r.DataLink != measure.LinkHolds || r.EmbeddedDataHash != "" {
					t.Errorf("inspect: exit %d accepted %v scheme %v data link %v embedded %q problems %q",
						code, r.Accepted, r.Scheme, r.DataLink, r.EmbeddedDataHash, r.Problems)
				}
				if want := []string{"0:" + hex.EncodeToString(h[:])}; strings.Join(r.HornetMapHashes, " ") != want[0] {
					t.Errorf("hornet map hashes %q, want %q", r.HornetMapHashes, want)
				}
				code, text, _ := run(t, "inspect", out, "--trust", cert)
				if code != exitOK || !strings.Contains(text, "ACCEPTED") || !hornetChain.MatchString(text) {
					t.Errorf("inspect text: exit %d\n%s", code, text)
				}

				if shape == "kernel-check" {
					return // the kernel scheme over this shape is kernel-bound
				}
				kout := filepath.Join(dir, name+"."+shape+".kernel.bundle")
				code, _, errs = run(t, "sign", "--key", key, "--cert", cert, "--scheme", "kernel", "--out", kout, in)
				if code != exitOK || !strings.Contains(errs, "use --scheme hornet") {
					t.Fatalf("sign --scheme kernel: exit %d, stderr %q: want the warning", code, errs)
				}
				code, r = inspectJSON(t, kout, "--trust", cert)
				if code != exitFailed || r.Accepted || r.DataLink != measure.LinkAbsent || !strings.Contains(strings.Join(r.Problems, ";"), "carries no data hash") {
					t.Errorf("kernel scheme: exit %d accepted %v data link %v problems %q", code, r.Accepted, r.DataLink, r.Problems)
				}
			})
		}
	}
}
