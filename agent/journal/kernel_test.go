package journal

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestBootHeaderKernel: a new boot's header carries Options.Kernel; a
// journal reopened within the boot keeps the header it has, whatever it is
// given now.
func TestBootHeaderKernel(t *testing.T) {
	dev := tpmtest.Open(t, "sim")
	dir := t.TempDir()
	k := cel.KernelInfo{Release: "6.18.4", Lockdown: "integrity", UnprivilegedBPFDisabled: 2,
		BPFJITEnable: 1, BPFJITHarden: 0, BPFJITKallsyms: cel.SysctlUnread}
	opts := options(dev)
	opts.Kernel = &k
	j := mustOpen(t, dir, dev, opts)
	header := func(j *Journal) *cel.KernelInfo {
		t.Helper()
		recs := checkReplay(t, j, dev)
		b, err := cel.ParseBootInfo(recs[0].Content)
		if err != nil {
			t.Fatal(err)
		}
		return b.Kernel
	}
	if diff := cmp.Diff(&k, header(j)); diff != "" {
		t.Errorf("new boot's header (-want +got):\n%s", diff)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	other := k
	other.Lockdown = "confidentiality"
	opts.Kernel = &other
	j = mustOpen(t, dir, dev, opts)
	defer j.Close()
	if diff := cmp.Diff(&k, header(j)); diff != "" {
		t.Errorf("reopened header (-want +got):\n%s", diff)
	}
}
