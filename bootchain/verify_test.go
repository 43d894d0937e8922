package bootchain_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// TestRealLogs replays each real firmware log into a TPM (the simulator and
// swtpm), extending every event's digests in order, quotes the boot PCRs
// and PCR 14 bank by bank, checks each quote with go-attestation's
// verifier, and verifies the log against the quoted values. The expected
// State comes from the log itself, read by the test's own reader
// (tpmtest.ParseFirmwareLog) and from the TPM: the replay values, Secure
// Boot as the SecureBoot variable event says, the boot applications' and
// GRUB kernel's digests, and PCR 14's start, which must equal what the
// TPM's PCR 14 holds.
func TestRealLogs(t *testing.T) {
	logs := readLogs(t)
	tpmtest.ForEach(t, func(t *testing.T, tg tpmtest.Target) {
		for _, name := range realLogs {
			t.Run(name, func(t *testing.T) {
				if tg.Swtpm != nil {
					if err := tg.Swtpm.Reboot(); err != nil { // PCRs back to reset
						t.Fatal(err)
					}
				}
				d := tpmtest.Open(t, tg.Spec) // a fresh simulator each time
				b := logs[name]
				l := tpmtest.ReplayFirmwareLog(t, d, b)
				quoted := quotePCRs(t, d, l.Banks, append(slices.Clone(bootPCRs), agentPCR))
				st, err := bootchain.Verify(b, quoted, bootchain.Options{AllowSHA1: !l.CryptoAgile})
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				checkState(t, l, quoted, st)
				tpm14, err := d.ReadPCR(agentPCR)
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range l.Banks {
					if !bytes.Equal(st.Agent.Start[h], tpm14[h]) {
						t.Errorf("agent start %v = %x, the TPM's pcr 14 holds %x", h, st.Agent.Start[h], tpm14[h])
					}
				}
				t.Logf("pcr 14: %d firmware events, start sha256 %x sha1 %x; secure boot known=%v enabled=%v (%s); %d boot apps; grub kernel %v",
					st.Agent.Events, st.Agent.Start[crypto.SHA256], st.Agent.Start[crypto.SHA1], st.SecureBoot.Known,
					st.SecureBoot.Enabled, st.SecureBoot.Problem, len(st.BootApps), st.Grub != nil && st.Grub.Kernel != nil)
			})
		}
	})
}

// checkState compares a State with what the test reader finds in the log.
func checkState(t *testing.T, l *tpmtest.FirmwareLog, quoted map[crypto.Hash]map[int][]byte, st *bootchain.State) {
	t.Helper()
	if !slices.Equal(st.Banks, l.Banks) {
		t.Errorf("banks %v, the log has %v", st.Banks, l.Banks)
	}
	if !slices.Equal(st.BootPCRs, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("boot pcrs %v", st.BootPCRs)
	}
	if len(st.Replayed) != len(l.Banks)*len(bootPCRs) {
		t.Errorf("%d replayed pcrs, want %d", len(st.Replayed), len(l.Banks)*len(bootPCRs))
	}
	for _, r := range st.Replayed {
		if n := len(l.Measured(r.PCR)); r.Events != n || !bytes.Equal(r.Value, quoted[r.Bank][r.PCR]) {
			t.Errorf("pcr %d %v: %d events, value %x; the log has %d, quoted %x", r.PCR, r.Bank, r.Events, r.Value, n, quoted[r.Bank][r.PCR])
		}
	}
	if len(st.Workarounds) != 0 {
		t.Errorf("workarounds %v on a log replayed as it is", st.Workarounds)
	}

	// Secure Boot: as the SecureBoot variable says; a variable that is
	// not one byte (crypto_agile's is empty) leaves the state unknown.
	sbv, ok := secureBootVar(t, l)
	switch {
	case !ok:
		if st.SecureBoot.Known {
			t.Errorf("secure boot known (enabled %v) without a one-byte SecureBoot variable in the log", st.SecureBoot.Enabled)
		}
	case !st.SecureBoot.Known:
		t.Errorf("secure boot unknown (%s); the log's SecureBoot variable is %d", st.SecureBoot.Problem, sbv)
	case st.SecureBoot.Enabled != (sbv == 1):
		t.Errorf("secure boot enabled %v; the log's SecureBoot variable is %d", st.SecureBoot.Enabled, sbv)
	}
	if st.SecureBoot.Known {
		want := bootAuthorities(t, l)
		if len(st.SecureBoot.BootAuthorities) != len(want) {
			t.Errorf("%d boot authorities, the log has %d certificates after the pcr 7 separator", len(st.SecureBoot.BootAuthorities), len(want))
		}
		for i := range min(len(want), len(st.SecureBoot.BootAuthorities)) {
			if got := st.SecureBoot.BootAuthorities[i]; !bytes.Equal(got.SHA256, want[i]) {
				t.Errorf("boot authority %d (%s) sha256 %x, the log's certificate %x", i, got.Subject, got.SHA256, want[i])
			}
		}
		if st.SecureBoot.Enabled && len(want) == 0 {
			t.Error("secure boot enabled without an authority")
		}
	}

	// PCR 4: the EV_EFI_BOOT_SERVICES_APPLICATION digests, in order.
	var apps []tpmtest.FirmwareEvent
	for _, e := range l.Measured(4) {
		if e.Type == tpmtest.EVEFIBootServicesApp {
			apps = append(apps, e)
		}
	}
	if len(st.BootApps) != len(apps) || st.LastBootApp != len(apps)-1 {
		t.Fatalf("%d boot apps, last %d; the log has %d", len(st.BootApps), st.LastBootApp, len(apps))
	}
	for i, a := range st.BootApps {
		for _, h := range l.Banks {
			if !bytes.Equal(a.Digests[h], apps[i].Digests[h]) || a.Type != tpmtest.EVEFIBootServicesApp {
				t.Errorf("boot app %d %v: %x type %#x, the log's %x", i, h, a.Digests[h], a.Type, apps[i].Digests[h])
			}
		}
	}

	// GRUB: the last kernel command line and the kernel file it names.
	cmdline, kernel := grubKernel(l)
	switch {
	case cmdline == "":
		if st.Grub != nil && st.Grub.KernelCmdline != "" {
			t.Errorf("kernel command line %q, the log has none", st.Grub.KernelCmdline)
		}
	case st.Grub == nil || st.Grub.KernelCmdline != cmdline:
		t.Errorf("grub %+v, the log's kernel command line is %q", st.Grub, cmdline)
	case kernel == nil || st.Grub.Kernel == nil:
		t.Errorf("kernel file %+v, the log's %+v", st.Grub.Kernel, kernel)
	default:
		for _, h := range l.Banks {
			if !bytes.Equal(st.Grub.Kernel.Digests[h], kernel.Digests[h]) {
				t.Errorf("kernel %v %x, the log's %x", h, st.Grub.Kernel.Digests[h], kernel.Digests[h])
			}
		}
		if !strings.HasPrefix(cmdline, st.Grub.Kernel.Path) || st.Grub.UnreadEvents != 0 {
			t.Errorf("kernel path %q, %d unread pcr 8 events; command line %q", st.Grub.Kernel.Path, st.Grub.UnreadEvents, cmdline)
		}
	}

	// PCR 14: the fold of the log's own events, in every bank.
	if st.Agent.PCR != agentPCR || st.Agent.Events != len(l.Measured(agentPCR)) || !st.Agent.Quoted {
		t.Errorf("agent %+v; the log has %d pcr 14 events", st.Agent, len(l.Measured(agentPCR)))
	}
	for _, h := range l.Banks {
		if want := l.Replay(agentPCR, h); !bytes.Equal(st.Agent.Start[h], want) {
			t.Errorf("agent start %v %x, the log folds to %x", h, st.Agent.Start[h], want)
		}
	}
	if sv := st.StartingValues(); len(sv) != len(l.Banks) {
		t.Errorf("StartingValues %v", sv)
	}
}

// bootAuthorities reads, with the test's own parsing, the SHA-256 of each
// certificate in the PCR 7 EV_EFI_VARIABLE_AUTHORITY events after the PCR 7
// separator: UEFI_VARIABLE_DATA whose VariableData is an EFI_SIGNATURE_DATA
// (owner GUID, then the DER certificate; shim's own may lack the GUID).
func bootAuthorities(t *testing.T, l *tpmtest.FirmwareLog) [][]byte {
	t.Helper()
	var out [][]byte
	sep := false
	for _, e := range l.Measured(7) {
		if e.Type == 0x00000004 {
			sep = true
			continue
		}
		if !sep || e.Type != 0x800000e0 || len(e.Data) < 32 {
			continue
		}
		n := binary.LittleEndian.Uint64(e.Data[16:])
		if n > uint64(len(e.Data)) {
			continue
		}
		// EFI_SIGNATURE_DATA (owner GUID, certificate), or, from shim
		// before commit 8a27a48, the certificate alone.
		for _, off := range []int{32 + 2*int(n) + 16, 32 + 2*int(n)} {
			if off >= len(e.Data) {
				continue
			}
			var raw asn1.RawValue
			if _, err := asn1.Unmarshal(e.Data[off:], &raw); err != nil {
				continue // not a certificate (shim's SbatLevel, a hash)
			}
			if _, err := x509.ParseCertificate(raw.FullBytes); err != nil {
				continue
			}
			sum := sha256.Sum256(raw.FullBytes)
			out = append(out, sum[:])
			break
		}
	}
	return out
}

// TestRealLogsFolded verifies every real log against the values its own
// events fold to, computed without a TPM: the pure path any verifier runs.
func TestRealLogsFolded(t *testing.T) {
	for name, b := range readLogs(t) {
		t.Run(name, func(t *testing.T) {
			l := parseLog(t, b)
			quoted := folded(l, append(slices.Clone(bootPCRs), agentPCR))
			st, err := bootchain.Verify(b, quoted, bootchain.Options{AllowSHA1: !l.CryptoAgile})
			if err != nil {
				t.Fatal(err)
			}
			checkState(t, l, quoted, st)
		})
	}
}
