package tpmtest_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"

	goattest "github.com/google/go-attestation/attest"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// realLogs are go-attestation's real firmware logs: UEFI crypto-agile logs
// of GCE shielded VMs (Ubuntu 21.04, Fedora CoreOS 36), of a Secure Boot
// machine with shim (sb_cert), of a Boot Guard platform (crypto_agile), and
// SHA-1 logs of a Windows boot with an option ROM and of a firmware that
// omits its Exit Boot Services events.
var realLogs = []string{
	"ubuntu_2104_shielded_vm_no_secure_boot_eventlog",
	"coreos_36_shielded_vm_no_secure_boot_eventlog",
	"sb_cert_eventlog",
	"crypto_agile_eventlog",
	"option_rom_eventlog",
	"ebs_event_missing_eventlog",
}

// TestParseFirmwareLogAgrees cross-checks the package's own reader with
// go-attestation's on every real log: the same banks, events, PCRs, types,
// data and digests.
func TestParseFirmwareLogAgrees(t *testing.T) {
	for name, b := range testutil.GoAttestationLogs(t, realLogs...) {
		l, err := tpmtest.ParseFirmwareLog(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		el, err := goattest.ParseEventLog(b)
		if err != nil {
			t.Fatalf("%s: go-attestation: %v", name, err)
		}
		if len(l.Banks) != len(el.Algs) {
			t.Errorf("%s: banks %v, go-attestation %v", name, l.Banks, el.Algs)
		}
		evs := l.Events
		if l.CryptoAgile {
			evs = evs[1:] // go-attestation does not return the Spec ID event
		}
		for _, h := range l.Banks {
			alg, err := goattest.FromCryptoHash(h)
			if err != nil {
				t.Fatal(err)
			}
			ga := el.Events(alg)
			if len(ga) != len(evs) {
				t.Fatalf("%s: %d events, go-attestation %d", name, len(evs), len(ga))
			}
			for i, e := range ga {
				o := evs[i]
				if int64(o.PCR) != int64(e.Index) || o.Type != uint32(e.Type) || !bytes.Equal(o.Data, e.Data) || !bytes.Equal(o.Digests[h], e.Digest) {
					t.Errorf("%s: event %d %v differs from go-attestation's", name, i, h)
				}
			}
		}
		if got := len(b); evs[len(evs)-1].End != got {
			t.Errorf("%s: last event ends at %d of %d bytes", name, evs[len(evs)-1].End, got)
		}
	}
}

// TestParseFirmwareLogRefuses: truncated logs and an empty one are errors.
func TestParseFirmwareLogRefuses(t *testing.T) {
	b := testutil.GoAttestationLogs(t, realLogs[0])[realLogs[0]]
	for _, in := range [][]byte{nil, b[:3], b[:len(b)-1], b[:40]} {
		if _, err := tpmtest.ParseFirmwareLog(in); !errors.Is(err, tpmtest.ErrFirmwareLog) {
			t.Errorf("%d bytes: %v, want ErrFirmwareLog", len(in), err)
		}
	}
}

// FuzzParseFirmwareLog: the test reader never panics.
func FuzzParseFirmwareLog(f *testing.F) {
	for _, b := range testutil.GoAttestationLogs(f, realLogs...) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := tpmtest.ParseFirmwareLog(b)
		if err == nil {
			for _, h := range l.Banks {
				l.Replay(0, h)
			}
		}
	})
}

// TestEncodeFirmwareLog: a log of our own reads back with this package's
// reader and with go-attestation's, with the digests of what was measured.
func TestEncodeFirmwareLog(t *testing.T) {
	banks := []crypto.Hash{crypto.SHA384, crypto.SHA1, crypto.SHA256}
	evs := []tpmtest.NewFirmwareEvent{
		{PCR: 0, Type: 0x4, Data: []byte{0, 0, 0, 0}},
		{PCR: 8, Type: tpmtest.EVIPL, Data: []byte("kernel_cmdline: /vmlinuz ro\x00"), Measured: []byte("/vmlinuz ro")},
		{PCR: 0, Type: tpmtest.EVNoAction, Data: []byte("StartupLocality\x00\x00")},
	}
	b := tpmtest.EncodeFirmwareLog(banks, evs)
	l, err := tpmtest.ParseFirmwareLog(b)
	if err != nil {
		t.Fatal(err)
	}
	if !l.CryptoAgile || !slices.Equal(l.Banks, []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384}) || len(l.Events) != 4 {
		t.Fatalf("read back: agile %v banks %v, %d events", l.CryptoAgile, l.Banks, len(l.Events))
	}
	want := sha256.Sum256([]byte("/vmlinuz ro"))
	if e := l.Events[2]; e.PCR != 8 || !bytes.Equal(e.Digests[crypto.SHA256], want[:]) || !bytes.Equal(e.Data, evs[1].Data) {
		t.Errorf("event 2: %+v", e)
	}
	el, err := goattest.ParseEventLog(b)
	if err != nil {
		t.Fatalf("go-attestation: %v", err)
	}
	if got := el.Events(goattest.HashSHA256); len(got) != 3 || got[1].Index != 8 {
		t.Errorf("go-attestation reads %d events", len(got))
	}
}
