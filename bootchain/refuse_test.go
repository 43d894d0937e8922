package bootchain_test

import (
	"bytes"
	"crypto"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// refusal is a log (or quote) changed one way, and the refusal it must
// get.
type refusal struct {
	name   string
	log    []byte
	quoted map[crypto.Hash]map[int][]byte
	opts   bootchain.Options
	reason bootchain.Reason
	bank   crypto.Hash // zero: not checked
	pcrs   []int       // nil: not checked
	event  int         // -1: not checked
}

// cloneQuoted deep-copies quoted values.
func cloneQuoted(q map[crypto.Hash]map[int][]byte) map[crypto.Hash]map[int][]byte {
	out := make(map[crypto.Hash]map[int][]byte, len(q))
	for h, m := range q {
		out[h] = maps.Clone(m)
	}
	return out
}

// findEvent returns the index of the first event of pcr whose data starts
// with prefix (and of type typ, unless typ is 0).
func findEvent(t *testing.T, l *tpmtest.FirmwareLog, pcr uint32, typ uint32, prefix string) int {
	t.Helper()
	for i, e := range l.Events {
		if e.PCR == pcr && (typ == 0 || e.Type == typ) && strings.HasPrefix(string(e.Data), prefix) {
			return i
		}
	}
	t.Fatalf("no pcr %d event %q in the log", pcr, prefix)
	return -1
}

// digestOffset returns where event i's digest of bank h is in the log.
func digestOffset(t *testing.T, b []byte, e tpmtest.FirmwareEvent, h crypto.Hash) int {
	t.Helper()
	i := bytes.Index(b[e.Offset:e.DataOffset], e.Digests[h])
	if i < 0 {
		t.Fatalf("digest %v not in the event header", h)
	}
	return e.Offset + i
}

// refusals builds the changed logs and quotes from the Ubuntu log (B) and
// the CoreOS log (a log of another machine), with quoted the Ubuntu boot's
// values (boot PCRs and PCR 14, every bank of the log) and extra a quoted
// SHA-512 bank that the log does not carry.
func refusals(t *testing.T, ubuntu, coreos []byte, quoted map[crypto.Hash]map[int][]byte, sha512 map[int][]byte) []refusal {
	l := parseLog(t, ubuntu)
	cmdline := findEvent(t, l, 8, tpmtest.EVIPL, "kernel_cmdline: ")
	grubCmd := findEvent(t, l, 8, tpmtest.EVIPL, "grub_cmd: linux ")
	sbVar := findEvent(t, l, 7, tpmtest.EVEFIVariableDriverConfig, "")
	shim := findEvent(t, l, 4, tpmtest.EVEFIBootServicesApp, "")
	mokList := findEvent(t, l, 14, tpmtest.EVIPL, "MokList\x00")
	var pcr9 []tpmtest.FirmwareEvent
	for _, e := range l.Events {
		if e.PCR == 9 {
			pcr9 = append(pcr9, e)
		}
	}
	noPCR9 := slices.Clone(ubuntu)
	for _, e := range slices.Backward(pcr9) {
		noPCR9 = without(noPCR9, e)
	}
	missing5 := cloneQuoted(quoted)
	delete(missing5[crypto.SHA256], 5)
	withSHA512 := cloneQuoted(quoted)
	withSHA512[crypto.SHA512] = sha512
	sha1Only := map[crypto.Hash]map[int][]byte{crypto.SHA1: quoted[crypto.SHA1]}
	wrongSize := cloneQuoted(quoted)
	wrongSize[crypto.SHA256][3] = wrongSize[crypto.SHA256][3][:20]

	return []refusal{
		// A one-byte change to an event's data, where the digest is the
		// data's hash: the kernel command line, a GRUB command, the
		// SecureBoot variable.
		{name: "byte of kernel_cmdline", log: flipped(ubuntu, l.Events[cmdline].DataOffset+30), reason: bootchain.DataMismatch,
			bank: crypto.SHA1, pcrs: []int{8}, event: cmdline},
		{name: "byte of grub_cmd linux", log: flipped(ubuntu, l.Events[grubCmd].End-2), reason: bootchain.DataMismatch,
			bank: crypto.SHA1, pcrs: []int{8}, event: grubCmd},
		{name: "byte of SecureBoot variable", log: flipped(ubuntu, l.Events[sbVar].End-1), reason: bootchain.DataMismatch,
			bank: crypto.SHA1, pcrs: []int{7}, event: sbVar},
		// A one-byte change to a digest (in one bank only: that bank
		// fails, naming the PCR).
		{name: "byte of shim's sha256 digest", log: flipped(ubuntu, digestOffset(t, ubuntu, l.Events[shim], crypto.SHA256)),
			reason: bootchain.ReplayMismatch, bank: crypto.SHA256, pcrs: []int{4}, event: -1},
		// A one-byte change to an event's PCR index moves it to PCR 10:
		// PCR 8 misses it.
		{name: "byte of an event's pcr index", log: setByte(ubuntu, l.Events[grubCmd].Offset, 10), reason: bootchain.ReplayMismatch,
			bank: crypto.SHA1, pcrs: []int{8}, event: -1},
		// Missing events.
		{name: "event removed: grub_cmd linux", log: without(ubuntu, l.Events[grubCmd]), reason: bootchain.ReplayMismatch,
			bank: crypto.SHA1, pcrs: []int{8}, event: -1},
		{name: "event removed: shim", log: without(ubuntu, l.Events[shim]), reason: bootchain.ReplayMismatch,
			bank: crypto.SHA1, pcrs: []int{4}, event: -1},
		{name: "every pcr 9 event removed", log: noPCR9, reason: bootchain.ReplayMismatch,
			bank: crypto.SHA1, pcrs: []int{9}, event: -1},
		// A log of another machine against this boot's quote.
		{name: "another machine's log", log: coreos, reason: bootchain.OtherBoot, bank: crypto.SHA1, pcrs: []int{0, 1, 4, 5, 7, 8, 9}, event: -1},
		// The quote does not cover what is needed.
		{name: "pcr 5 not quoted", log: ubuntu, quoted: missing5, reason: bootchain.MissingQuotedPCR, bank: crypto.SHA256, pcrs: []int{5}, event: -1},
		{name: "no bank quoted", log: ubuntu, quoted: map[crypto.Hash]map[int][]byte{}, reason: bootchain.MissingQuotedPCR, event: -1},
		{name: "sha512 bank the log lacks", log: ubuntu, quoted: withSHA512, reason: bootchain.UnsupportedBank, bank: crypto.SHA512, event: -1},
		{name: "sha1 only", log: ubuntu, quoted: sha1Only, reason: bootchain.UnsupportedBank, bank: crypto.SHA1, event: -1},
		{name: "quoted value of 20 bytes in sha256", log: ubuntu, quoted: wrongSize, reason: bootchain.BadOptions, bank: crypto.SHA256, pcrs: []int{3}, event: -1},
		{name: "agent pcr among boot pcrs", log: ubuntu, opts: bootchain.Options{BootPCRs: []int{0, 14}}, reason: bootchain.BadOptions, event: -1},
		{name: "boot pcr out of range", log: ubuntu, opts: bootchain.Options{BootPCRs: []int{24}}, reason: bootchain.BadOptions, event: -1},
		// Bytes that are not a log.
		{name: "empty", log: nil, reason: bootchain.Malformed, event: -1},
		{name: "last byte cut", log: ubuntu[:len(ubuntu)-1], reason: bootchain.Malformed, event: -1},
		{name: "event size too large", log: flipped(ubuntu, l.Events[mokList].DataOffset-1), reason: bootchain.Malformed, event: -1},
		{name: "not a log", log: []byte(strings.Repeat("not a firmware log ", 10)), reason: bootchain.Malformed, event: -1},
	}
}

// TestRefusals replays the Ubuntu 21.04 log into a TPM (the simulator and
// swtpm), quotes it, and verifies changed logs and quotes against that
// quote: a one-byte change to an event's data, to a digest or to a PCR
// index, a missing event, another machine's log, missing or unsupported
// banks and PCRs, and bytes that are no log are each refused with their
// own Reason, naming the bank, PCRs and event.
func TestRefusals(t *testing.T) {
	logs := readLogs(t)
	ubuntu, coreos := logs[logUbuntu], logs[logCoreOS]
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		d := tpmtest.Open(t, tg.Spec)
		l := tpmtest.ReplayFirmwareLog(t, d, ubuntu)
		pcrs := append(slices.Clone(bootPCRs), agentPCR)
		quoted := quotePCRs(t, d, l.Banks, pcrs)
		sha512 := quotePCRs(t, d, []crypto.Hash{crypto.SHA512}, pcrs)[crypto.SHA512]
		if _, err := bootchain.Verify(ubuntu, quoted, bootchain.Options{}); err != nil {
			t.Fatalf("the unchanged log: %v", err)
		}
		for _, c := range refusals(t, ubuntu, coreos, quoted, sha512) {
			q := c.quoted
			if q == nil {
				q = quoted
			}
			st, err := bootchain.Verify(c.log, q, c.opts)
			var e *bootchain.Error
			switch {
			case st != nil || !errors.As(err, &e):
				t.Errorf("%s: %v, %v; want a *bootchain.Error", c.name, st, err)
				continue
			case !errors.Is(err, c.reason) || e.Reason != c.reason:
				t.Errorf("%s: %v; want %q", c.name, err, c.reason)
			case c.bank != 0 && e.Bank != c.bank:
				t.Errorf("%s: %v; want bank %v", c.name, err, c.bank)
			case c.pcrs != nil && !slices.Equal(e.PCRs, c.pcrs):
				t.Errorf("%s: %v; want pcrs %v", c.name, err, c.pcrs)
			case c.event >= 0 && e.Event != c.event:
				t.Errorf("%s: %v; want event %d", c.name, err, c.event)
			}
			t.Logf("%s: %v", c.name, err)
		}
	})
}
