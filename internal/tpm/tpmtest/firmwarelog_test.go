package tpmtest_test

import (
	"bytes"
	"errors"
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
