package tpm_test

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestCheckquoteAcceptsQuote is the independent check: tpm2-tools'
// tpm2_checkquote accepts our quotes (ECC and RSA AK, on swtpm and the
// simulator) from the files we write, and rejects each of a tampered
// message, signature, PCR value and qualifying data.
func TestCheckquoteAcceptsQuote(t *testing.T) {
	checkquote := testutil.RequireTool(t, "tpm2_checkquote")
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		mustExtend(t, d, testPCR)
		for _, alg := range akAlgorithms {
			t.Run(alg.String(), func(t *testing.T) {
				ak := mustAK(t, d, tpm.AKOptions{Algorithm: alg, StateDir: t.TempDir()})
				n := nonce(t)
				// 2 banks × 3 PCRs: six values, under tpm2-tools 5.4's limit
				// of 7 for the raw values format.
				q, err := d.Quote(ak, n, []int{0, testPCR, 23}, []crypto.Hash{crypto.SHA1, crypto.SHA256})
				if err != nil {
					t.Fatal(err)
				}
				f := writeCheckquoteFiles(t, ak, q)
				sel := "sha1:0,14,23+sha256:0,14,23"
				args := func(msg, sig, pcrs, qual string) []string {
					return []string{"-u", f.pub, "-m", msg, "-s", sig, "-f", pcrs, "-l", sel, "-g", "sha256", "-q", qual}
				}
				qual := hex.EncodeToString(n)
				runCheckquote(t, checkquote, true, args(f.msg, f.sig, f.pcrs, qual)...)

				badQual := make([]byte, len(n))
				copy(badQual, n)
				badQual[0] ^= 1
				tampered := map[string][]string{
					"message":         args(flipped(t, f.msg, 40), f.sig, f.pcrs, qual),
					"signature":       args(f.msg, flipped(t, f.sig, len(readFile(t, f.sig))-3), f.pcrs, qual),
					"pcr value":       args(f.msg, f.sig, flipped(t, f.pcrs, 25), qual),
					"qualifying data": args(f.msg, f.sig, f.pcrs, hex.EncodeToString(badQual)),
				}
				for name, a := range tampered {
					t.Run("tampered "+name, func(t *testing.T) { runCheckquote(t, checkquote, false, a...) })
				}
			})
		}
	})
}

// TestCheckquoteAllPCRs proves the C-struct PCR file format (the one
// tpm2_quote -o writes) is accepted for a full 24-PCR quote, which the raw
// values format cannot carry in tpm2-tools 5.4.
func TestCheckquoteAllPCRs(t *testing.T) {
	checkquote := testutil.RequireTool(t, "tpm2_checkquote")
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		ak := mustAK(t, d, tpm.AKOptions{})
		mustExtend(t, d, testPCR)
		all := make([]int, 24)
		for i := range all {
			all[i] = i
		}
		n := nonce(t)
		q, err := d.Quote(ak, n, all, []crypto.Hash{crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		f := writeCheckquoteFiles(t, ak, q)
		structs := filepath.Join(t.TempDir(), "pcrs.struct")
		if err := os.WriteFile(structs, tpmtest.CheckquotePCRFile(q.PCRs), 0o600); err != nil {
			t.Fatal(err)
		}
		runCheckquote(t, checkquote, true, "-u", f.pub, "-m", f.msg, "-s", f.sig, "-f", structs, "-g", "sha256", "-q", hex.EncodeToString(n))
		runCheckquote(t, checkquote, false, "-u", f.pub, "-m", f.msg, "-s", f.sig, "-f", flipped(t, structs, pcrStructOffset(testPCR)+3), "-g", "sha256", "-q", hex.EncodeToString(n))
	})
}

type checkquoteFiles struct{ pub, msg, sig, pcrs string }

// writeCheckquoteFiles writes the AK public key as a PEM SPKI, the
// TPMS_ATTEST, the TPMT_SIGNATURE and the raw concatenated PCR values.
func writeCheckquoteFiles(tb testing.TB, ak *tpm.AK, q *tpm.Quote) checkquoteFiles {
	tb.Helper()
	dir := tb.TempDir()
	spki, err := x509.MarshalPKIXPublicKey(ak.Public())
	if err != nil {
		tb.Fatal(err)
	}
	var pcrs []byte
	for _, v := range q.PCRs {
		pcrs = append(pcrs, v.Digest...)
	}
	f := checkquoteFiles{
		pub:  filepath.Join(dir, "ak.pem"),
		msg:  filepath.Join(dir, "quote.msg"),
		sig:  filepath.Join(dir, "quote.sig"),
		pcrs: filepath.Join(dir, "pcrs.bin"),
	}
	for path, data := range map[string][]byte{
		f.pub:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
		f.msg:  q.Attest,
		f.sig:  q.Signature,
		f.pcrs: pcrs,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return f
}

// pcrStructOffset is where the value of the i-th PCR value starts in a
// tpmtest.CheckquotePCRFile.
func pcrStructOffset(i int) int { return 132 + 4 + (i/8)*532 + 4 + (i%8)*66 + 2 }

func runCheckquote(tb testing.TB, bin string, wantOK bool, args ...string) {
	tb.Helper()
	out, err := exec.CommandContext(tb.Context(), bin, args...).CombinedOutput()
	switch {
	case wantOK && err != nil:
		tb.Fatalf("tpm2_checkquote %s: %v\n%s", strings.Join(args, " "), err, out)
	case !wantOK && err == nil:
		tb.Fatalf("tpm2_checkquote accepted a tampered input: %s\n%s", strings.Join(args, " "), out)
	case !wantOK:
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			tb.Fatalf("tpm2_checkquote did not run: %v", err)
		}
	}
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// flipped writes a copy of the file with one bit flipped at offset and
// returns its path.
func flipped(tb testing.TB, path string, offset int) string {
	tb.Helper()
	b := readFile(tb, path)
	if offset >= len(b) {
		tb.Fatalf("flip offset %d beyond %d bytes of %s", offset, len(b), path)
	}
	b[offset] ^= 0x01
	out := filepath.Join(tb.TempDir(), fmt.Sprintf("flipped-%d-%s", offset, filepath.Base(path)))
	if err := os.WriteFile(out, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return out
}
