package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

var updateSample = flag.Bool("update", false, "rewrite the demo's synthetic firmware log in sample/ (TestDemoFirmwareLog) and the verdicts TestEARRealVerdicts captures into ear/testdata/verdicts")

// The demo's synthetic firmware log: events of our own, in the shapes UEFI
// firmware, shim and GRUB log (TCG PC Client PFP §10; shim's MokList
// events; GRUB's PCR 8 strings and PCR 9 files), made by this test (see
// sample/README.md). Nothing in it was measured on a machine: the boot
// applications and the kernel are digests of short texts.
const (
	demoKernelPath = "/boot/vmlinuz-6.18-demo"
	demoCmdline    = demoKernelPath + " root=/dev/vda1 ro lockdown=integrity"
)

// EFI GUIDs (UEFI 2.10 §3.3, §32.4.1; shim's SHIM_LOCK_GUID), as
// EFI_GUID's little-endian first three fields and the last eight bytes.
type efiGUID struct {
	a    uint32
	b, c uint16
	d    [8]byte
}

var (
	efiGlobalVariable  = efiGUID{0x8be4df61, 0x93ca, 0x11d2, [8]byte{0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}}
	efiImageSecurityDB = efiGUID{0xd719b2cb, 0x3d3a, 0x4596, [8]byte{0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}}
	efiCertX509        = efiGUID{0xa5c059a1, 0x94e4, 0x4aa7, [8]byte{0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72}}
	efiCertSHA256      = efiGUID{0xc1c41626, 0x504c, 0x4092, [8]byte{0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28}}
	// demoOwner is the SignatureOwner of the demo's entries (made up).
	demoOwner = efiGUID{0x62706661, 0x7474, 0x6573, [8]byte{'t', '-', 'd', 'e', 'm', 'o', 0, 1}}
)

func (g efiGUID) bytes() []byte {
	b := binary.LittleEndian.AppendUint32(nil, g.a)
	b = binary.LittleEndian.AppendUint16(b, g.b)
	b = binary.LittleEndian.AppendUint16(b, g.c)
	return append(b, g.d[:]...)
}

// variableData is a UEFI_VARIABLE_DATA (PFP §10.3.3).
func variableData(guid efiGUID, name string, data []byte) []byte {
	u := utf16.Encode([]rune(name))
	b := guid.bytes()
	b = binary.LittleEndian.AppendUint64(b, uint64(len(u)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, data...)
}

// signatureList is an EFI_SIGNATURE_LIST of one entry (UEFI §32.4.1).
func signatureList(typ efiGUID, entry []byte) []byte {
	b := typ.bytes()
	b = binary.LittleEndian.AppendUint32(b, uint32(28+16+len(entry)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(16+len(entry)))
	b = append(b, demoOwner.bytes()...)
	return append(b, entry...)
}

// imageLoad is a UEFI_IMAGE_LOAD_EVENT (PFP §10.2.3) with an empty device
// path (its end node).
func imageLoad(addr uint64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, addr)
	b = binary.LittleEndian.AppendUint64(b, 0x100000)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, 4)
	return append(b, 0x7f, 0xff, 4, 0)
}

func utf16z(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

// demoSecureBootCert is the TEST-ONLY certificate the demo's PK, KEK and db
// hold and that "verified" its boot applications: Ed25519 from a fixed
// seed, so the log is the same at every generation.
func demoSecureBootCert(tb testing.TB) []byte {
	tb.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte("bpfattest demo!!"), 2))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "TEST-ONLY bpfattest demo Secure Boot key (DO NOT TRUST)", Organization: []string{"TEST ONLY - bpfattest demo"}},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(bytes.NewReader(make([]byte, 64)), tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// demoFirmwareLog builds the demo's synthetic log.
func demoFirmwareLog(tb testing.TB) []byte {
	tb.Helper()
	const (
		evSeparator   = 0x4
		evSCRTM       = 0x8
		evIPL         = 0xd
		evDriverCfg   = 0x80000001
		evBootApp     = 0x80000003
		evEFIAction   = 0x80000007
		evVarAuthorit = 0x800000e0
	)
	cert := demoSecureBootCert(tb)
	dbx := bytes.Repeat([]byte{0xdb}, 32) // one revoked image hash
	var evs []tpmtest.NewFirmwareEvent
	add := func(pcr, typ uint32, data, measured []byte) {
		evs = append(evs, tpmtest.NewFirmwareEvent{PCR: pcr, Type: typ, Data: data, Measured: measured})
	}
	add(0, evSCRTM, utf16z("bpfattest demo firmware 1.0 (synthetic)"), nil)
	add(7, evDriverCfg, variableData(efiGlobalVariable, "SecureBoot", []byte{1}), nil)
	add(7, evDriverCfg, variableData(efiGlobalVariable, "PK", signatureList(efiCertX509, cert)), nil)
	add(7, evDriverCfg, variableData(efiGlobalVariable, "KEK", signatureList(efiCertX509, cert)), nil)
	add(7, evDriverCfg, variableData(efiImageSecurityDB, "db", signatureList(efiCertX509, cert)), nil)
	add(7, evDriverCfg, variableData(efiImageSecurityDB, "dbx", signatureList(efiCertSHA256, dbx)), nil)
	for pcr := uint32(0); pcr <= 7; pcr++ {
		add(pcr, evSeparator, []byte{0, 0, 0, 0}, nil)
	}
	add(4, evEFIAction, []byte("Calling EFI Application from Boot Option"), nil)
	add(7, evVarAuthorit, variableData(efiImageSecurityDB, "db", append(demoOwner.bytes(), cert...)), nil)
	add(4, evBootApp, imageLoad(0x7e000000), []byte("synthetic shim image (bpfattest demo)"))
	add(14, evIPL, []byte("MokList\x00"), []byte("synthetic MokList (bpfattest demo)"))
	add(14, evIPL, []byte("MokListX\x00"), []byte("synthetic MokListX (bpfattest demo)"))
	add(4, evBootApp, imageLoad(0x7d000000), []byte("synthetic GRUB image (bpfattest demo)"))
	add(8, evIPL, []byte("grub_cmd: linux "+demoCmdline+"\x00"), []byte("linux "+demoCmdline))
	add(9, evIPL, []byte(demoKernelPath+"\x00"), []byte("synthetic kernel image (bpfattest demo)"))
	add(8, evIPL, []byte("kernel_cmdline: "+demoCmdline+"\x00"), []byte(demoCmdline))
	add(5, evEFIAction, []byte("Exit Boot Services Invocation"), nil)
	add(5, evEFIAction, []byte("Exit Boot Services Returned with Success"), nil)
	return tpmtest.EncodeFirmwareLog([]crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}, evs)
}

// TestDemoFirmwareLog checks the committed synthetic log is what this test
// generates (go test ./cmd/bpfattest -run TestDemoFirmwareLog -update
// rewrites it) and that it verifies as the demo shows it: Secure Boot on
// with the demo's TEST-ONLY key, shim and GRUB, GRUB's kernel and command
// line, and shim's two events on PCR 14.
func TestDemoFirmwareLog(t *testing.T) {
	want := demoFirmwareLog(t)
	path := filepath.Join("sample", demoFirmwareLogName)
	if *updateSample {
		// The binary embeds the old file; the next run compares.
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if !bytes.Equal(demoFirmware, want) {
		t.Fatalf("%s differs from what the test generates: run go test ./cmd/bpfattest -run TestDemoFirmwareLog -update", path)
	}
	l, err := tpmtest.ParseFirmwareLog(want)
	if err != nil {
		t.Fatal(err)
	}
	quoted := map[crypto.Hash]map[int][]byte{}
	for _, h := range l.Banks {
		quoted[h] = map[int][]byte{}
		for p := range 10 {
			quoted[h][p] = l.Replay(p, h)
		}
		quoted[h][14] = l.Replay(14, h)
	}
	st, err := bootchain.Verify(want, quoted, bootchain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sb := st.SecureBoot
	if !sb.Known || !sb.Enabled || len(sb.DB.Certs) != 1 || sb.DBX.Hashes != 1 || len(sb.BootAuthorities) != 1 {
		t.Errorf("secure boot %+v", sb)
	}
	if len(st.BootApps) != 2 || st.Grub == nil || st.Grub.KernelCmdline != demoCmdline || st.Grub.Kernel == nil || st.Grub.Kernel.Path != demoKernelPath {
		t.Errorf("boot apps %d, grub %+v", len(st.BootApps), st.Grub)
	}
	if st.Agent.Events != 2 {
		t.Errorf("pcr 14: %d events", st.Agent.Events)
	}
}
