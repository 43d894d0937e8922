package attest

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// The real firmware logs of go-attestation's test data (module cache).
const (
	logUbuntu = "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"
	logCoreOS = "coreos_36_shielded_vm_no_secure_boot_eventlog"
)

// testKernel is what the test agent's boot headers record of the kernel.
var testKernel = cel.KernelInfo{Release: "6.18.4-test", Lockdown: "integrity", UnprivilegedBPFDisabled: 2,
	BPFJITEnable: 1, BPFJITHarden: 0, BPFJITKallsyms: 1}

// bootAgent replays a real firmware log into a fresh TPM of spec, then
// starts the test agent on it: a host whose shim extended PCR 14 before
// the agent ran.
func bootAgent(tb testing.TB, spec string, fw []byte) *testAgent {
	tb.Helper()
	dev := tpmtest.Open(tb, spec)
	tpmtest.ReplayFirmwareLog(tb, dev, fw)
	ak, err := dev.LoadOrCreateAK(tpm.AKOptions{StateDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	k := testKernel
	a := &testAgent{tb: tb, dev: dev, ak: ak, dir: tb.TempDir(), bootID: testBootID, nextID: 100, kernel: &k}
	a.open()
	a.load(fixtureMeasurement(tb, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
	return a
}

// quoteBoot quotes the agent's PCR with the default boot PCRs in the
// SHA-256 bank, as the agent does, and attaches fw.
func (a *testAgent) quoteBoot(nonce []byte, from uint64, fw []byte) *evidence.Evidence {
	a.tb.Helper()
	var ev *evidence.Evidence
	err := a.j.Snapshot(func(recs []cel.Record, _ map[crypto.Hash][]byte) error {
		pcrs := append(DefaultBootPCRs(), a.j.PCR())
		q, err := a.dev.Quote(a.ak, evidence.QualifyingData(nonce), pcrs, []crypto.Hash{crypto.SHA256})
		if err != nil {
			return err
		}
		ev = evidenceOf(a.ak, q, a.j.PCR())
		ev.Log, err = cel.Encode(recs[from:])
		ev.FromRecord, ev.FirmwareLog = from, fw
		return err
	})
	if err != nil {
		a.tb.Fatal(err)
	}
	return ev
}

// bootOpts are a's options with the default boot PCRs.
func (a *testAgent) bootOpts(nonce []byte, st *State) VerifyOptions {
	o := a.opts(nonce)
	o.BootPCRs, o.State = DefaultBootPCRs(), st
	return o
}

// TestBootChain is a shim host (the Ubuntu 21.04 log replayed into the
// simulator and swtpm before the agent starts): the firmware log verifies
// against the boot PCRs quoted with the agent's, derives PCR 14's start
// from shim's MokList events (without it the same evidence fails
// StartMismatch), and the Result reports the boot: Secure Boot as the
// log's SecureBoot variable says, the boot applications, GRUB's kernel and
// command line, and the kernel's facts from the boot header.
func TestBootChain(t *testing.T) {
	fw := testutil.GoAttestationLogs(t, logUbuntu)[logUbuntu]
	l, err := tpmtest.ParseFirmwareLog(fw)
	if err != nil {
		t.Fatal(err)
	}
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		a := bootAgent(t, tg.Spec, fw)
		n := freshNonce(t, 0)
		if _, err := Verify(a.quoteBoot(n, 0, nil), a.bootOpts(n, nil)); !errors.Is(err, StartMismatch) {
			t.Fatalf("without the firmware log: %v, want StartMismatch", err)
		}
		res, err := Verify(a.quoteBoot(n, 0, fw), a.bootOpts(n, nil))
		if err != nil {
			t.Fatal(err)
		}
		b := res.Boot()
		if b.Chain == nil || !b.StartDerived || b.FromState || b.Problem != "" {
			t.Fatalf("boot %+v", b)
		}
		pcr14 := l.Replay(14, crypto.SHA256)
		if got := b.Chain.StartingValues()[crypto.SHA256]; !bytes.Equal(got, pcr14) || b.Chain.Agent.Events != 2 {
			t.Errorf("pcr 14 start %x from %d events, the log folds to %x", got, b.Chain.Agent.Events, pcr14)
		}
		t.Logf("%s: pcr 14 starts at sha256:%x (shim's %d MokList events)", tg.Name, pcr14, b.Chain.Agent.Events)
		if !b.Chain.SecureBoot.Known || b.Chain.SecureBoot.Enabled {
			t.Errorf("secure boot %+v, the log's SecureBoot variable is 0", b.Chain.SecureBoot)
		}
		k := b.KernelImage()
		if k == nil || k.Source != "grub" || !strings.HasPrefix(b.Cmdline(), k.Path+" ") || len(b.Chain.BootApps) != 2 {
			t.Errorf("kernel %+v, cmdline %q, %d boot apps", k, b.Cmdline(), len(b.Chain.BootApps))
		}
		if !slices.Equal(b.BootPCRs, DefaultBootPCRs()) || !bytes.Equal(b.Quoted[crypto.SHA256][4], l.Replay(4, crypto.SHA256)) {
			t.Errorf("boot pcrs %v, quoted pcr 4 %x", b.BootPCRs, b.Quoted[crypto.SHA256][4])
		}
		if b.Kernel == nil || *b.Kernel != testKernel {
			t.Errorf("kernel facts %+v", b.Kernel)
		}
		// The Result hands out copies.
		b.Chain.BootApps[0].Digests[crypto.SHA256][0] ^= 0xff
		b.Kernel.Lockdown = "none"
		if again := res.Boot(); again.Chain.BootApps[0].Digests[crypto.SHA256][0] == b.Chain.BootApps[0].Digests[crypto.SHA256][0] || again.Kernel.Lockdown != "integrity" {
			t.Error("Boot() shares the Result's memory")
		}

		// The State remembers the chain: the next quote needs no log, in
		// the State as Verify made it and as decoded from either encoding.
		for name, st := range roundTrips(t, res.State()) {
			n := freshNonce(t, 1)
			a.load(fixtureMeasurement(t, "counter.signed.lskel.h", measure.KernelCheckUnavailable), measure.OutcomeLoaded)
			next, err := Verify(a.quoteBoot(n, st.NextRecord(), nil), a.bootOpts(n, st))
			if err != nil {
				t.Fatalf("%s: incremental without the log: %v", name, err)
			}
			nb := next.Boot()
			if nb.Chain == nil || !nb.FromState || !nb.StartDerived || nb.Kernel == nil || *nb.Kernel != testKernel {
				t.Errorf("%s: incremental boot %+v", name, nb)
			}
			if diff := cmp.Diff(b.Chain.SecureBoot, nb.Chain.SecureBoot); diff != "" {
				t.Errorf("%s: secure boot (-first +incremental):\n%s", name, diff)
			}
		}

		// A boot PCR that changed since the chain was verified is refused.
		if err := a.dev.Extend(9, map[crypto.Hash][]byte{crypto.SHA1: make([]byte, 20), crypto.SHA256: make([]byte, 32),
			crypto.SHA384: make([]byte, 48), crypto.SHA512: make([]byte, 64)}); err != nil {
			t.Fatal(err)
		}
		n = freshNonce(t, 2)
		_, err = Verify(a.quoteBoot(n, res.NextRecord(), nil), a.bootOpts(n, res.State()))
		if ve := wantCheck(t, err, BootChain); ve != nil && !strings.Contains(ve.Detail, "pcr 9") {
			t.Errorf("changed pcr 9: %v", err)
		}
	})
}

// roundTrips returns st and st decoded from its binary and JSON
// encodings, which must re-encode to the same bytes.
func roundTrips(tb testing.TB, st *State) map[string]*State {
	tb.Helper()
	b, err := st.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	var fromBin State
	if err := fromBin.UnmarshalBinary(b); err != nil {
		tb.Fatal(err)
	}
	if again, _ := fromBin.MarshalBinary(); !bytes.Equal(again, b) {
		tb.Error("binary state re-encodes differently")
	}
	js, err := json.Marshal(st)
	if err != nil {
		tb.Fatal(err)
	}
	var fromJSON State
	if err := json.Unmarshal(js, &fromJSON); err != nil {
		tb.Fatal(err)
	}
	if again, _ := fromJSON.MarshalBinary(); !bytes.Equal(again, b) {
		tb.Error("JSON state decodes to another state")
	}
	return map[string]*State{"verified": st, "binary": &fromBin, "json": &fromJSON}
}

// TestBootChainRefusals: a firmware log that does not replay to the quoted
// boot PCRs fails Verify with BootChain and bootchain's reason: a one-byte
// change to the kernel command line, a missing event, another machine's
// log. The options and the selection are checked too.
func TestBootChainRefusals(t *testing.T) {
	logs := testutil.GoAttestationLogs(t, logUbuntu, logCoreOS)
	fw := logs[logUbuntu]
	l, err := tpmtest.ParseFirmwareLog(fw)
	if err != nil {
		t.Fatal(err)
	}
	var cmdline, grubLinux tpmtest.FirmwareEvent
	for _, e := range l.Events {
		switch {
		case e.PCR == 8 && bytes.HasPrefix(e.Data, []byte("kernel_cmdline: ")):
			cmdline = e
		case e.PCR == 8 && bytes.HasPrefix(e.Data, []byte("grub_cmd: linux ")):
			grubLinux = e
		}
	}
	changed := bytes.Clone(fw)
	changed[cmdline.DataOffset+30] ^= 1
	missing := slices.Concat(fw[:grubLinux.Offset], fw[grubLinux.End:])

	a := bootAgent(t, "sim", fw)
	for name, c := range map[string]struct {
		log    []byte
		reason bootchain.Reason
	}{
		"one byte of the kernel command line": {changed, bootchain.DataMismatch},
		"the grub_cmd linux event missing":    {missing, bootchain.ReplayMismatch},
		"another machine's log":               {logs[logCoreOS], bootchain.OtherBoot},
		"not a log":                           {[]byte("not a firmware log"), bootchain.Malformed},
	} {
		n := freshNonce(t, 0)
		_, err := Verify(a.quoteBoot(n, 0, c.log), a.bootOpts(n, nil))
		wantCheck(t, err, BootChain)
		if !errors.Is(err, c.reason) {
			t.Errorf("%s: %v, want %v", name, err, c.reason)
		}
	}

	n := freshNonce(t, 1)
	ev := a.quoteBoot(n, 0, fw)
	// The verifier asks for other boot PCRs than the quote covers.
	for name, pcrs := range map[string][]int{"none": nil, "0-7": {0, 1, 2, 3, 4, 5, 6, 7}, "0-10": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}} {
		o := a.bootOpts(n, nil)
		o.BootPCRs = pcrs
		if _, err := Verify(ev, o); !errors.Is(err, PCRSelection) {
			t.Errorf("boot pcrs %s: %v, want PCRSelection", name, err)
		}
	}
	o := a.bootOpts(n, nil)
	o.BootPCRs = []int{0, 24}
	wantCheck(t, func() error { _, err := Verify(ev, o); return err }(), BadOptions)
	// The agent's PCR among the boot PCRs counts once.
	o = a.bootOpts(n, nil)
	o.BootPCRs = append(DefaultBootPCRs(), 14, 3)
	if _, err := Verify(ev, o); err != nil {
		t.Errorf("boot pcrs with the agent's: %v", err)
	}
	// StartingValues that contradict the firmware log.
	o = a.bootOpts(n, nil)
	o.StartingValues = map[crypto.Hash][]byte{crypto.SHA256: make([]byte, 32)}
	wantCheck(t, func() error { _, err := Verify(ev, o); return err }(), StartMismatch)
	o.StartingValues[crypto.SHA256] = l.Replay(14, crypto.SHA256)
	if _, err := Verify(ev, o); err != nil {
		t.Errorf("StartingValues that agree with the log: %v", err)
	}
}

// TestBootChainLater: a State of the boot verified without a firmware log
// (its start given by the verifier) takes a chain from a later quote, whose
// derived start must be the boot header's; and a reboot needs the log
// again.
func TestBootChainLater(t *testing.T) {
	fw := testutil.GoAttestationLogs(t, logUbuntu)[logUbuntu]
	l, err := tpmtest.ParseFirmwareLog(fw)
	if err != nil {
		t.Fatal(err)
	}
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	a := bootAgent(t, sw.Spec(), fw)
	n := freshNonce(t, 0)
	o := a.bootOpts(n, nil)
	o.StartingValues = map[crypto.Hash][]byte{crypto.SHA256: l.Replay(14, crypto.SHA256)}
	first, err := Verify(a.quoteBoot(n, 0, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	if b := first.Boot(); b.Chain != nil || b.Problem != NoFirmwareLog || b.StartDerived {
		t.Errorf("without a log: %+v", b)
	}
	n = freshNonce(t, 1)
	second, err := Verify(a.quoteBoot(n, first.NextRecord(), fw), a.bootOpts(n, first.State()))
	if err != nil {
		t.Fatal(err)
	}
	if b := second.Boot(); b.Chain == nil || b.FromState || !b.StartDerived {
		t.Errorf("log on a later quote: %+v", b)
	}

	// Reboot: the new boot's quote carries no chain until it brings a log.
	a.close()
	if err := sw.Reboot(); err != nil {
		t.Fatal(err)
	}
	tpmtest.ReplayFirmwareLog(t, a.dev, fw)
	a.bootID = "6a1c0f2e-1b2c-4d3e-8f40-000000000002"
	a.open()
	n = freshNonce(t, 2)
	o = a.bootOpts(n, second.State())
	o.StartingValues = map[crypto.Hash][]byte{crypto.SHA256: l.Replay(14, crypto.SHA256)}
	third, err := Verify(a.quoteBoot(n, 0, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	if b := third.Boot(); !third.Rebooted() || b.Chain != nil || b.Problem != NoFirmwareLog {
		t.Errorf("after the reboot: rebooted %v, %+v", third.Rebooted(), b)
	}
}

// TestStateBootSection: a State's boot section is canonical and its
// firmware log is verified again when decoded; a State without one (as
// written before it existed) still decodes.
func TestStateBootSection(t *testing.T) {
	if bootchain.MaxLogSize != evidence.MaxFirmwareLogSize {
		t.Errorf("bootchain reads %d bytes, the wire carries %d", bootchain.MaxLogSize, evidence.MaxFirmwareLogSize)
	}
	fw := testutil.GoAttestationLogs(t, logUbuntu)[logUbuntu]
	a := bootAgent(t, "sim", fw)
	n := freshNonce(t, 0)
	res, err := Verify(a.quoteBoot(n, 0, fw), a.bootOpts(n, nil))
	if err != nil {
		t.Fatal(err)
	}
	st := res.State()
	good, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	old := *st
	old.boot = stateBoot{}
	base, err := old.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(good, base) {
		t.Fatal("the boot section does not follow the records")
	}
	var s State
	if err := s.UnmarshalBinary(base); err != nil || !s.boot.empty() {
		t.Errorf("a state without a boot section: %v", err)
	}
	section := good[len(base):]
	// The section: tag, start (u8 banks, each u16 alg and value), kernel
	// (u32 length and encoding), chain flag, then the chain: u8 boot pcrs,
	// the pcrs, u8 banks, u16 alg and the values.
	off := 2
	for range int(section[1]) {
		h, _ := cel.HashForAlg(uint16(section[off])<<8 | uint16(section[off+1]))
		off += 2 + h.Size()
	}
	kernelLen := int(section[off])<<24 | int(section[off+1])<<16 | int(section[off+2])<<8 | int(section[off+3])
	chainFlag := off + 4 + kernelLen
	valueOff := chainFlag + 1 + 1 + 10 + 1 + 2 // the first quoted value (sha256, pcr 0)
	with := func(off int, v byte) []byte {
		b := slices.Concat(base, section)
		b[len(base)+off] = v
		return b
	}
	for name, b := range map[string][]byte{
		"empty section":        slices.Concat(base, []byte{1, 0, 0, 0, 0, 0, 0}),
		"section tag 2":        with(0, 2),
		"chain flag 2":         with(chainFlag, 2),
		"no chain, bytes left": with(chainFlag, 0),
		"quoted value changed": with(valueOff, section[valueOff]^1),
		"agent pcr as boot pcr": func() []byte {
			b := slices.Concat(base, section)
			b[len(base)+chainFlag+2+9] = 14 // the last boot pcr
			return b
		}(),
		"trailing": append(slices.Clone(good), 0),
	} {
		var s State
		if err := s.UnmarshalBinary(b); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"empty boot": func(s string) string {
			i := strings.Index(s, `"boot":`)
			return s[:i] + `"boot":{}}`
		},
		"log of another machine": func(s string) string {
			other := testutil.GoAttestationLogs(t, logCoreOS)[logCoreOS]
			b, _ := json.Marshal(other)
			i := strings.Index(s, `"firmware_log":`)
			j := strings.Index(s[i:], `"}`)
			return s[:i] + `"firmware_log":` + string(b) + s[i+j+1:]
		},
	} {
		var s State
		if err := json.Unmarshal([]byte(edit(string(js))), &s); !errors.Is(err, ErrState) {
			t.Errorf("json %s: %v, want ErrState", name, err)
		}
	}
}
