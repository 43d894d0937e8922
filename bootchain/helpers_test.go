package bootchain_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	goattest "github.com/google/go-attestation/attest"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// The real firmware logs go-attestation ships as test data (read from the
// module cache, never copied here).
const (
	logUbuntu      = "ubuntu_2104_shielded_vm_no_secure_boot_eventlog" // GCE, shim + GRUB, crypto-agile sha1/256/384
	logCoreOS      = "coreos_36_shielded_vm_no_secure_boot_eventlog"   // GCE, shim + GRUB (blscfg), crypto-agile
	logSBCert      = "sb_cert_eventlog"                                // Secure Boot on, shim without 8a27a48 (go-attestation issue 157)
	logCryptoAgile = "crypto_agile_eventlog"                           // Boot Guard platform, sha256 only
	logOptionROM   = "option_rom_eventlog"                             // SHA-1 format, Windows boot, option ROM driver
	logEBSMissing  = "ebs_event_missing_eventlog"                      // SHA-1 format, firmware omits the EBS events
)

var realLogs = []string{logUbuntu, logCoreOS, logSBCert, logCryptoAgile, logOptionROM, logEBSMissing}

// agentPCR is the PCR whose firmware events the tests derive a start for.
const agentPCR = 14

// bootPCRs are the default boot PCRs, 0 to 9.
var bootPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}

func readLogs(tb testing.TB) map[string][]byte {
	tb.Helper()
	return testutil.GoAttestationLogs(tb, realLogs...)
}

func parseLog(tb testing.TB, b []byte) *tpmtest.FirmwareLog {
	tb.Helper()
	l, err := tpmtest.ParseFirmwareLog(b)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// folded returns the values a TPM holds after the log's events, computed
// by the test reader without a TPM: the quoted values of a machine whose
// log it is.
func folded(l *tpmtest.FirmwareLog, pcrs []int) map[crypto.Hash]map[int][]byte {
	out := map[crypto.Hash]map[int][]byte{}
	for _, h := range l.Banks {
		out[h] = map[int][]byte{}
		for _, p := range pcrs {
			out[h][p] = l.Replay(p, h)
		}
	}
	return out
}

// quotePCRs replays nothing: it quotes pcrs on d in each of banks with a
// fresh AK, checks each quote with go-attestation's verifier (signature,
// nonce, PCR digest: an implementation independent of ours), and returns
// the quoted values.
func quotePCRs(tb testing.TB, d *tpm.Device, banks []crypto.Hash, pcrs []int) map[crypto.Hash]map[int][]byte {
	tb.Helper()
	ak, err := d.LoadOrCreateAK(tpm.AKOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := goattest.ParseAKPublic(ak.PublicArea())
	if err != nil {
		tb.Fatal(err)
	}
	out := map[crypto.Hash]map[int][]byte{}
	for _, h := range banks {
		nonce := make([]byte, 32)
		rand.Read(nonce)
		q, err := d.Quote(ak, nonce, pcrs, []crypto.Hash{h})
		if err != nil {
			tb.Fatalf("quote %v: %v", h, err)
		}
		var vals []goattest.PCR
		out[h] = map[int][]byte{}
		for _, v := range q.PCRs {
			vals = append(vals, goattest.PCR{Index: v.Index, Digest: v.Digest, DigestAlg: v.Bank})
			out[h][v.Index] = v.Digest
		}
		if err := pub.Verify(goattest.Quote{Quote: q.Attest, Signature: q.Signature}, vals, nonce); err != nil {
			tb.Fatalf("go-attestation refuses the %v quote: %v", h, err)
		}
	}
	return out
}

// without returns the log without event i.
func without(b []byte, e tpmtest.FirmwareEvent) []byte {
	return slices.Concat(b[:e.Offset], b[e.End:])
}

// flipped returns the log with one bit of the byte at off changed.
func flipped(b []byte, off int) []byte {
	return setByte(b, off, b[off]^0x01)
}

// setByte returns the log with the byte at off set to v.
func setByte(b []byte, off int, v byte) []byte {
	c := bytes.Clone(b)
	c[off] = v
	return c
}

// grubKernel finds, with the test reader, GRUB's last kernel command line
// and the PCR 9 file event whose logged path is the command line's first
// word: the expected kernel of a GRUB boot.
func grubKernel(l *tpmtest.FirmwareLog) (cmdline string, file *tpmtest.FirmwareEvent) {
	cmdPos := -1
	for i, e := range l.Events {
		if e.PCR == 8 && e.Type == tpmtest.EVIPL {
			if s, ok := strings.CutPrefix(string(e.Data), "kernel_cmdline: "); ok {
				cmdline, cmdPos = strings.TrimSuffix(s, "\x00"), i
			}
		}
	}
	if cmdline == "" {
		return "", nil
	}
	path := strings.Fields(cmdline)[0]
	for i := cmdPos - 1; i >= 0; i-- {
		e := l.Events[i]
		if e.PCR == 9 && e.Type == tpmtest.EVIPL && strings.TrimSuffix(string(e.Data), "\x00") == path {
			return cmdline, &l.Events[i]
		}
	}
	return cmdline, nil
}

// secureBootVar returns the SecureBoot variable's value as the log's PCR 7
// EV_EFI_VARIABLE_DRIVER_CONFIG event records it (UEFI_VARIABLE_DATA:
// GUID, name length, data length, UTF-16 name, data), read by the test.
func secureBootVar(tb testing.TB, l *tpmtest.FirmwareLog) (byte, bool) {
	tb.Helper()
	name := []byte{'S', 0, 'e', 0, 'c', 0, 'u', 0, 'r', 0, 'e', 0, 'B', 0, 'o', 0, 'o', 0, 't', 0}
	for _, e := range l.Events {
		if e.PCR != 7 || e.Type != tpmtest.EVEFIVariableDriverConfig || len(e.Data) < 32 {
			continue
		}
		n := binary.LittleEndian.Uint64(e.Data[16:])
		dl := binary.LittleEndian.Uint64(e.Data[24:])
		if n != 10 || dl != 1 || len(e.Data) != 32+20+1 || !bytes.Equal(e.Data[32:52], name) {
			continue
		}
		return e.Data[52], true
	}
	return 0, false
}
