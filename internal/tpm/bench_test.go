package tpm_test

import (
	"crypto"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// benchTargets opens each TPM kind for a benchmark.
func benchTargets(b *testing.B, f func(b *testing.B, d *tpm.Device)) {
	b.Run("sim", func(b *testing.B) { f(b, tpmtest.Open(b, "sim")) })
	b.Run("swtpm", func(b *testing.B) {
		s := tpmtest.StartSwtpm(b, tpmtest.SwtpmOptions{})
		f(b, tpmtest.Open(b, s.Spec()))
	})
}

// BenchmarkExtend measures one PCR_Extend carrying every active bank (4).
func BenchmarkExtend(b *testing.B) {
	benchTargets(b, func(b *testing.B, d *tpm.Device) {
		dg := randomDigests(b, d.Banks())
		for b.Loop() {
			if err := d.Extend(testPCR, dg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReadPCR measures reading one PCR in every active bank.
func BenchmarkReadPCR(b *testing.B) {
	benchTargets(b, func(b *testing.B, d *tpm.Device) {
		for b.Loop() {
			if _, err := d.ReadPCR(testPCR); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQuote measures a whole Quote: AK load, PCR read, TPM2_Quote over
// the sha256 bank of PCRs 0 and 14, AK flush.
func BenchmarkQuote(b *testing.B) {
	benchTargets(b, func(b *testing.B, d *tpm.Device) {
		for _, alg := range akAlgorithms {
			b.Run(alg.String(), func(b *testing.B) {
				ak := mustAK(b, d, tpm.AKOptions{Algorithm: alg})
				n := nonce(b)
				for b.Loop() {
					if _, err := d.Quote(ak, n, []int{0, testPCR}, []crypto.Hash{crypto.SHA256}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}
