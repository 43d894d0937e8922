package service

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestQuoteFirmwareLog: every quote covers the boot PCRs with the agent's;
// the firmware log comes with it only when the verifier asks, and Status
// says which log the agent serves.
func TestQuoteFirmwareLog(t *testing.T) {
	testutil.RequireRoot(t)
	fw := filepath.Join(t.TempDir(), "binary_bios_measurements")
	if err := os.WriteFile(fw, []byte("firmware events"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(t.Context(), agent.Config{TPM: "sim", StateDir: t.TempDir(), ObserverInterval: -1,
		NoKernel: true, FirmwareLog: fw, BootPCRs: []int{0, 4, 7}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	s := New(a, Options{})
	r := &remoteService{s: s}
	ctx := remotePeer(t.Context())
	for _, include := range []bool{false, true} {
		resp, code := call(ctx, s, "/bpfattest.v1.AttestationService/Quote",
			&pb.QuoteRequest{Nonce: make([]byte, evidence.MinNonceSize), IncludeFirmwareLog: include}, r.Quote)
		if code != codes.OK {
			t.Fatalf("quote: %v", code)
		}
		ev, err := evidence.FromProto(resp.(*pb.Evidence))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(ev.FirmwareLog); (got == "firmware events") != include || (got == "") == include {
			t.Errorf("include %v: firmware log %q", include, got)
		}
		var pcrs []int
		for _, v := range ev.PCRs {
			if v.Bank == ev.PCRs[0].Bank {
				pcrs = append(pcrs, v.Index)
			}
		}
		if !slices.Equal(pcrs, []int{0, 4, 7, 14}) {
			t.Errorf("quoted pcrs %v, want the boot pcrs and 14", pcrs)
		}
	}
	st, err := statusProto(a.Status())
	if err != nil {
		t.Fatal(err)
	}
	if st.GetFirmwareLog() != fw+" (15 bytes)" || !slices.Equal(st.GetBootPcrs(), []uint32{0, 4, 7}) {
		t.Errorf("status firmware log %q, boot pcrs %v", st.GetFirmwareLog(), st.GetBootPcrs())
	}
	if b := a.FirmwareLog(); !bytes.Equal(b, []byte("firmware events")) {
		t.Errorf("FirmwareLog() = %q", b)
	}
}
