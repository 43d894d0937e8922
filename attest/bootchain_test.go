package attest

import (
	"crypto"
	"testing"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// TestShimHostStart is the shim host of a real boot: the Ubuntu 21.04 log
// (go-attestation's test data: shim extended PCR 14 with MokList and
// MokListX) is replayed into the simulator before the agent starts, and the
// agent then records a load on PCR 14. Verify refuses the agent's log from
// a zero start (StartMismatch, every shim host's failure before the boot
// chain was verified) and accepts it from the start bootchain.Verify
// derives from the firmware log, checked against a quote of the boot PCRs.
func TestShimHostStart(t *testing.T) {
	const name = "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"
	fw := testutil.GoAttestationLogs(t, name)[name]
	dev := tpmtest.Open(t, "sim")
	l := tpmtest.ReplayFirmwareLog(t, dev, fw)
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{tb: t, dev: dev, ak: ak, dir: t.TempDir(), bootID: testBootID, nextID: 100}
	a.open()
	a.load(fixtureMeasurement(t, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)

	// The verifier's view of the boot chain: a quote of PCRs 0-9 and the
	// agent's, in each bank of the firmware log.
	pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, journal.DefaultPCR}
	quoted := map[crypto.Hash]map[int][]byte{}
	for _, h := range l.Banks {
		q, err := dev.Quote(ak, freshNonce(t, int(h)), pcrs, []crypto.Hash{h})
		if err != nil {
			t.Fatal(err)
		}
		quoted[h] = map[int][]byte{}
		for _, v := range q.PCRs {
			quoted[h][v.Index] = v.Digest
		}
	}
	st, err := bootchain.Verify(fw, quoted, bootchain.Options{AgentPCR: journal.DefaultPCR})
	if err != nil {
		t.Fatal(err)
	}
	if st.Agent.Events != 2 || !st.Agent.Quoted {
		t.Fatalf("agent start %+v, want shim's two events", st.Agent)
	}

	nonce := freshNonce(t, 0)
	ev := a.quote(nonce, 0)
	_, err = Verify(ev, a.opts(nonce))
	wantCheck(t, err, StartMismatch)
	opts := a.opts(nonce)
	opts.StartingValues = st.StartingValues()
	res, err := Verify(ev, opts)
	if err != nil {
		t.Fatalf("from the firmware log's start: %v", err)
	}
	if len(res.Programs()) != 1 {
		t.Errorf("%d programs, want the one load", len(res.Programs()))
	}
}
