package tpm_test

import (
	"crypto"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestNoHandleLeak proves every path flushes what it loads: after open, AK
// creation and reload for both key types, quotes, extends, reads and EK
// certificate reads, the TPM holds no transient object and no session
// (TPM2_GetCapability(TPM_CAP_HANDLES)). swtpm has 3 object slots, so a
// leak would also make later commands fail. On swtpm, tpm2_getcap (another
// client, between our commands) confirms it independently.
func TestNoHandleLeak(t *testing.T) {
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		checkNoHandles(t, d)
		dir := t.TempDir()
		for round := range 4 { // more rounds than swtpm has slots
			for _, alg := range akAlgorithms {
				// Round 0 creates the parent and AKs, later rounds reload them.
				ak := mustAK(t, d, tpm.AKOptions{Algorithm: alg, StateDir: dir})
				for range 2 {
					mustExtend(t, d, testPCR)
					if _, err := d.Quote(ak, nonce(t), []int{0, testPCR}, d.Banks()); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			}
			if _, err := d.EKCertificate(tpm.EKCertIndexRSA2048); err != nil {
				t.Fatal(err)
			}
			mustReadPCR(t, d, testPCR)
			mustClock(t, d)
		}
		// A refused quote (bad AK blob) must not leak either.
		if _, err := d.Quote(&tpm.AK{}, nonce(t), []int{0}, []crypto.Hash{crypto.SHA256}); err == nil {
			t.Fatal("quote with an empty AK succeeded")
		}
		checkNoHandles(t, d)
		if tg.Swtpm != nil {
			checkNoHandlesTPM2Tools(t, tg.Swtpm)
		}
	})
}

// TestOpenFlushesStrayHandles proves Open clears transient objects another
// client left on a TPM without a resource manager, which would otherwise
// fill swtpm's 3 slots.
func TestOpenFlushesStrayHandles(t *testing.T) {
	s := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	d := tpmtest.Open(t, s.Spec())
	for range 3 { // fill every slot
		_, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
		}.Execute(d.Transport())
		if err != nil {
			t.Fatal(err)
		}
	}
	hs, err := d.TransientHandles()
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 3 {
		t.Fatalf("%d stray handles, want 3", len(hs))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = tpmtest.Open(t, s.Spec())
	checkNoHandles(t, d)
	mustAK(t, d, tpm.AKOptions{}) // needs free slots
}

func checkNoHandles(tb testing.TB, d *tpm.Device) {
	tb.Helper()
	hs, err := d.TransientHandles()
	if err != nil {
		tb.Fatal(err)
	}
	if len(hs) != 0 {
		tb.Fatalf("leaked handles: %#x", hs)
	}
}

func checkNoHandlesTPM2Tools(tb testing.TB, s *tpmtest.Swtpm) {
	tb.Helper()
	getcap := testutil.RequireTool(tb, "tpm2_getcap")
	for _, kind := range []string{"handles-transient", "handles-loaded-session"} {
		cmd := exec.CommandContext(tb.Context(), getcap, kind)
		cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI())
		out, err := cmd.CombinedOutput()
		if err != nil {
			tb.Fatalf("tpm2_getcap %s: %v\n%s", kind, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "" {
			tb.Errorf("tpm2_getcap %s lists %s", kind, fmt.Sprintf("%q", got))
		}
	}
}
