package bootchain_test

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// sha1Event encodes a TPM 1.2-format event (TCG_PCR_EVENT: pcr, type, SHA-1
// digest, size, data) measuring data.
func sha1Event(pcr, typ uint32, data []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, pcr)
	b = binary.LittleEndian.AppendUint32(b, typ)
	d := crypto.SHA1.New()
	d.Write(data)
	b = d.Sum(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// TestEBSWorkaround: the firmware behind ebs_event_missing_eventlog
// measured its Exit Boot Services actions into PCR 5 but did not log them.
// The TPM is given the log plus those two events; Verify accepts the log
// as it is only through go-attestation's workaround, and says so.
func TestEBSWorkaround(t *testing.T) {
	b := readLogs(t)[logEBSMissing]
	full := slices.Concat(b,
		sha1Event(5, 0x80000007, []byte("Exit Boot Services Invocation")),
		sha1Event(5, 0x80000007, []byte("Exit Boot Services Returned with Success")))
	d := tpmtest.Open(t, "sim")
	tpmtest.ReplayFirmwareLog(t, d, full)
	quoted := quotePCRs(t, d, []crypto.Hash{crypto.SHA1}, append(slices.Clone(bootPCRs), agentPCR))
	st, err := bootchain.Verify(b, quoted, bootchain.Options{AllowSHA1: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Workarounds) != 1 || st.Workarounds[0].PCR != 5 || st.Workarounds[0].Bank != crypto.SHA1 {
		t.Fatalf("workarounds %+v, want one for pcr 5 sha1", st.Workarounds)
	}
	t.Log(st.Workarounds[0].Detail)
	// The log with the two events verifies without a workaround.
	st, err = bootchain.Verify(full, quoted, bootchain.Options{AllowSHA1: true})
	if err != nil || len(st.Workarounds) != 0 {
		t.Fatalf("full log: %v, workarounds %+v", err, st.Workarounds)
	}
}

// TestUncovered shows what a log can change without Verify noticing, and
// that none of it reaches the State: bytes that no digest covers (the
// device path in a boot application's event) leave the State as it was,
// and the event type, which no digest covers either, cannot hide a boot
// application or a GRUB string. A type that claims the digest is over
// the data is held to it.
func TestUncovered(t *testing.T) {
	b := readLogs(t)[logUbuntu]
	l := parseLog(t, b)
	quoted := folded(l, append(slices.Clone(bootPCRs), agentPCR))
	want, err := bootchain.Verify(b, quoted, bootchain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	shim := findEvent(t, l, 4, tpmtest.EVEFIBootServicesApp, "")
	cmdline := findEvent(t, l, 8, tpmtest.EVIPL, "kernel_cmdline: ")
	typeAt := func(i int, typ uint32) []byte {
		c := bytes.Clone(b)
		binary.LittleEndian.PutUint32(c[l.Events[i].Offset+4:], typ)
		return c
	}

	got, err := bootchain.Verify(flipped(b, l.Events[shim].End-8), quoted, bootchain.Options{})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("a device path byte changed: %v; the State changed: %v", err, !reflect.DeepEqual(got, want))
	}

	const evPostCode = 0x00000001
	got, err = bootchain.Verify(typeAt(shim, evPostCode), quoted, bootchain.Options{})
	switch {
	case err != nil:
		t.Errorf("shim retyped EV_POST_CODE: %v", err)
	case len(got.BootApps) != len(want.BootApps) || got.BootApps[0].Type != evPostCode ||
		!bytes.Equal(got.BootApps[0].Digests[crypto.SHA256], want.BootApps[0].Digests[crypto.SHA256]):
		t.Errorf("shim retyped EV_POST_CODE: boot apps %+v, want shim's digest kept under its new type", got.BootApps)
	}

	got, err = bootchain.Verify(typeAt(cmdline, evPostCode), quoted, bootchain.Options{})
	if err != nil || got.Grub.KernelCmdline != want.Grub.KernelCmdline {
		t.Errorf("kernel_cmdline retyped EV_POST_CODE: %v, %q", err, got.Grub.KernelCmdline)
	}

	const evSeparator = 0x00000004
	_, err = bootchain.Verify(typeAt(shim, evSeparator), quoted, bootchain.Options{})
	if !errors.Is(err, bootchain.DataMismatch) {
		t.Errorf("shim retyped EV_SEPARATOR: %v, want DataMismatch", err)
	}
}

// TestOptions checks the PCR choices: the default boot PCRs leave out the
// agent's, PCR 8 as the agent PCR takes GRUB's strings out of the boot
// chain and into the agent's start, custom boot PCRs replay only those,
// NoAgentPCR derives nothing, and an agent PCR outside the quote is
// reported as not quoted.
func TestOptions(t *testing.T) {
	b := readLogs(t)[logUbuntu]
	l := parseLog(t, b)
	all := make([]int, 24)
	for i := range all {
		all[i] = i
	}
	quoted := folded(l, all)

	st, err := bootchain.Verify(b, quoted, bootchain.Options{AgentPCR: 8})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(st.BootPCRs, 8) || st.Grub == nil || st.Grub.KernelCmdline != "" || len(st.Grub.Files) == 0 {
		t.Errorf("agent pcr 8: boot pcrs %v, grub %+v", st.BootPCRs, st.Grub)
	}
	if st.Agent.PCR != 8 || st.Agent.Events != len(l.Measured(8)) || !bytes.Equal(st.Agent.Start[crypto.SHA256], l.Replay(8, crypto.SHA256)) {
		t.Errorf("agent pcr 8: %+v", st.Agent)
	}

	st, err = bootchain.Verify(b, quoted, bootchain.Options{BootPCRs: []int{7, 0, 7}})
	if err != nil || !slices.Equal(st.BootPCRs, []int{0, 7}) || len(st.BootApps) != 0 || st.LastStage() != nil || st.Grub != nil || !st.SecureBoot.Known {
		t.Errorf("boot pcrs 0 and 7: %v, %+v", err, st)
	}

	st, err = bootchain.Verify(b, quoted, bootchain.Options{AgentPCR: bootchain.NoAgentPCR})
	if err != nil || st.Agent.PCR != -1 || st.StartingValues() != nil || !slices.Equal(st.BootPCRs, bootPCRs) {
		t.Errorf("no agent pcr: %v, %+v", err, st)
	}

	noAgent := cloneQuoted(quoted)
	for h := range noAgent {
		delete(noAgent[h], agentPCR)
	}
	st, err = bootchain.Verify(b, noAgent, bootchain.Options{})
	if err != nil || st.Agent.Quoted || st.Agent.Events != 2 {
		t.Errorf("agent pcr not quoted: %v, %+v", err, st.Agent)
	}
	if app := st.LastStage(); app == nil || app.Event != st.BootApps[len(st.BootApps)-1].Event {
		t.Errorf("last stage %+v", app)
	}
}

// TestLoggedBanksOnly: a quoted bank the log does not carry (a TPM with a
// SHA-512 bank under firmware that logs SHA-1, SHA-256 and SHA-384) is
// refused by default, and with LoggedBanksOnly left out of the replay and
// reported; what remains must still be a bank stronger than SHA-1.
func TestLoggedBanksOnly(t *testing.T) {
	b := readLogs(t)[logUbuntu]
	l := parseLog(t, b)
	quoted := folded(l, append(slices.Clone(bootPCRs), agentPCR))
	quoted[crypto.SHA512] = map[int][]byte{}
	for _, p := range append(slices.Clone(bootPCRs), agentPCR) {
		quoted[crypto.SHA512][p] = make([]byte, 64)
	}
	if _, err := bootchain.Verify(b, quoted, bootchain.Options{}); !errors.Is(err, bootchain.UnsupportedBank) {
		t.Fatalf("default: %v, want UnsupportedBank", err)
	}
	st, err := bootchain.Verify(b, quoted, bootchain.Options{LoggedBanksOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Unlogged, []crypto.Hash{crypto.SHA512}) || slices.Contains(st.Banks, crypto.SHA512) || len(st.Banks) != 3 {
		t.Errorf("banks %v, unlogged %v", st.Banks, st.Unlogged)
	}
	if _, ok := st.StartingValues()[crypto.SHA512]; ok {
		t.Error("a start derived for a bank the log does not carry")
	}
	sha1 := map[crypto.Hash]map[int][]byte{crypto.SHA1: quoted[crypto.SHA1], crypto.SHA512: quoted[crypto.SHA512]}
	if _, err := bootchain.Verify(b, sha1, bootchain.Options{LoggedBanksOnly: true}); !errors.Is(err, bootchain.UnsupportedBank) {
		t.Errorf("sha1 left alone: %v, want UnsupportedBank", err)
	}
	if _, err := bootchain.Verify(b, sha1, bootchain.Options{LoggedBanksOnly: true, AllowSHA1: true}); err != nil {
		t.Errorf("sha1 left alone, allowed: %v", err)
	}
	only := map[crypto.Hash]map[int][]byte{crypto.SHA512: quoted[crypto.SHA512]}
	if _, err := bootchain.Verify(b, only, bootchain.Options{LoggedBanksOnly: true}); !errors.Is(err, bootchain.UnsupportedBank) {
		t.Errorf("no logged bank: %v, want UnsupportedBank", err)
	}
}

// TestClone: a clone equals its State and shares none of its memory.
func TestClone(t *testing.T) {
	logs := readLogs(t)
	for _, name := range []string{logUbuntu, logSBCert} {
		b := logs[name]
		l := parseLog(t, b)
		st, err := bootchain.Verify(b, folded(l, append(slices.Clone(bootPCRs), agentPCR)), bootchain.Options{AllowSHA1: true})
		if err != nil {
			t.Fatal(err)
		}
		c := st.Clone()
		if !reflect.DeepEqual(st, c) {
			t.Fatalf("%s: clone differs", name)
		}
		// Zero every byte the clone can reach; the original must not change.
		before := st.Clone()
		zeroBytes(reflect.ValueOf(c))
		if !reflect.DeepEqual(st, before) {
			t.Errorf("%s: changing the clone changed the State", name)
		}
	}
	if (*bootchain.State)(nil).Clone() != nil {
		t.Error("nil clone")
	}
}

// zeroBytes sets every byte of every []byte reachable from v to 0xff and
// every string to "x".
func zeroBytes(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			zeroBytes(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				zeroBytes(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			for i := range v.Len() {
				v.Index(i).SetUint(0xff)
			}
			return
		}
		for i := range v.Len() {
			zeroBytes(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.Slice && e.Type().Elem().Kind() == reflect.Uint8 {
				for i := range e.Len() {
					e.Index(i).SetUint(0xff)
				}
			}
		}
	case reflect.String:
		v.SetString("x")
	}
}
