package tpmtest

import (
	"errors"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
)

// Open opens the TPM named by spec (see tpm.Open) and closes it in
// tb.Cleanup unless the test closed it already. An unsupported TPM (errors.ErrUnsupported (the
// simulator in a build without cgo) skips the test through
// testutil.SkipEnv.
func Open(tb testing.TB, spec string) *tpm.Device {
	tb.Helper()
	d, err := tpm.Open(tb.Context(), spec)
	if errors.Is(err, errors.ErrUnsupported) {
		testutil.SkipEnv(tb, "tpm %q: %v", spec, err)
	}
	if err != nil {
		tb.Fatalf("open tpm: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil && !errors.Is(err, tpm.ErrClosed) {
			tb.Errorf("close tpm: %v", err)
		}
	})
	return d
}

// Target is one TPM implementation a test runs against.
type Target struct {
	// Name is "sim" or "swtpm", the subtest name.
	Name string
	// Spec opens it with tpm.Open (or Open).
	Spec string
	// Swtpm is the swtpm process, nil for the simulator.
	Swtpm *Swtpm
}

// ForEach runs f as a subtest once on the in-process simulator and once on
// a freshly started swtpm. Subtests are not parallel: the simulator is one
// per process.
func ForEach(t *testing.T, f func(t *testing.T, tg Target)) {
	t.Helper()
	t.Run("sim", func(t *testing.T) {
		f(t, Target{Name: "sim", Spec: "sim"})
	})
	t.Run("swtpm", func(t *testing.T) {
		s := StartSwtpm(t, SwtpmOptions{})
		f(t, Target{Name: "swtpm", Spec: s.Spec(), Swtpm: s})
	})
}
