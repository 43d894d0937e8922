package attest

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// TestCheckquoteAgrees runs tpm2-tools' tpm2_checkquote, an independent
// quote checker, and Verify on the same corpus of genuine and tampered
// quotes (ECC and RSA AKs, on the simulator and on swtpm) and requires
// them to agree on every one: accept the genuine, reject each tampering of
// the signed message, the signature, the claimed PCR value and the nonce.
func TestCheckquoteAgrees(t *testing.T) {
	checkquote := testutil.RequireTool(t, "tpm2_checkquote")
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		for _, alg := range []tpm.AKAlgorithm{tpm.AKECCP256, tpm.AKRSA2048} {
			t.Run(alg.String(), func(t *testing.T) {
				a := newTestAgent(t, tg.Spec, alg)
				a.load(fixtureMeasurement(t, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
				nonce := freshNonce(t, 0)
				ev := a.quote(nonce, 0)
				pub := writePEM(t, a.ak)
				for _, c := range quoteCorpus(ev, nonce) {
					t.Run(c.name, func(t *testing.T) {
						opts := a.opts(c.nonce)
						opts.StartingValues = a.start // swtpm is shared by the subtests
						_, err := Verify(c.ev, opts)
						ours := err == nil
						theirs := runCheckquote(t, checkquote, pub, c.ev, c.nonce)
						if ours != theirs || ours != c.valid {
							t.Fatalf("Verify accepted=%v (%v), tpm2_checkquote accepted=%v, want %v", ours, err, theirs, c.valid)
						}
					})
				}
			})
		}
	})
}

type quoteCase struct {
	name  string
	ev    *evidence.Evidence
	nonce []byte
	valid bool
}

// quoteCorpus returns the genuine evidence and tampered copies.
func quoteCorpus(ev *evidence.Evidence, nonce []byte) []quoteCase {
	cases := []quoteCase{{"genuine", ev, nonce, true}}
	flip := func(name string, f func(e *evidence.Evidence)) {
		c := cloneEvidence(ev)
		f(c)
		cases = append(cases, quoteCase{name, c, nonce, false})
	}
	// One flip in every field of the TPMS_ATTEST: magic, type,
	// qualifiedSigner, extraData, clock info, firmware, selection, digest.
	for _, off := range []int{0, 4, 8, 40, 75, 80, 95, 100, 110, len(ev.Attest) - 1} {
		if off < len(ev.Attest) {
			flip(fmt.Sprintf("attest byte %d", off), func(e *evidence.Evidence) { e.Attest[off] ^= 0x01 })
		}
	}
	for _, off := range []int{0, 3, 10, len(ev.Signature) / 2, len(ev.Signature) - 1} {
		flip(fmt.Sprintf("signature byte %d", off), func(e *evidence.Evidence) { e.Signature[off] ^= 0x01 })
	}
	flip("pcr value", func(e *evidence.Evidence) { e.PCRs[0].Digest[5] ^= 0x80 })
	other := append([]byte(nil), nonce...)
	other[0] ^= 1
	cases = append(cases, quoteCase{"other nonce", ev, other, false})
	return cases
}

func writePEM(t *testing.T, ak *tpm.AK) string {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(ak.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ak.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCheckquote reports whether tpm2_checkquote accepts ev for nonce. The
// qualifying data it checks is the one Verify derives from the nonce.
func runCheckquote(t *testing.T, bin, pub string, ev *evidence.Evidence, nonce []byte) bool {
	t.Helper()
	dir := t.TempDir()
	var pcrs []byte
	for _, v := range ev.PCRs {
		pcrs = append(pcrs, v.Digest...)
	}
	files := map[string][]byte{"quote.msg": ev.Attest, "quote.sig": ev.Signature, "pcrs.bin": pcrs}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.CommandContext(t.Context(), bin, "-u", pub,
		"-m", filepath.Join(dir, "quote.msg"), "-s", filepath.Join(dir, "quote.sig"),
		"-f", filepath.Join(dir, "pcrs.bin"), "-l", fmt.Sprintf("sha256:%d", ev.PCR), "-g", "sha256",
		"-q", hex.EncodeToString(evidence.QualifyingData(nonce))).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &exit):
		t.Logf("tpm2_checkquote: %s", firstLine(out))
		return false
	}
	t.Fatalf("tpm2_checkquote did not run: %v", err)
	return false
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}
