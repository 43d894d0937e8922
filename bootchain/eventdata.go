package bootchain

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"strings"

	goattest "github.com/google/go-attestation/attest"
)

// Event types this package reads (TCG PC Client Platform Firmware Profile
// Specification, Family "2.0", §10.4.1 "Event Types").
const (
	evNoAction                uint32 = 0x00000003
	evSeparator               uint32 = 0x00000004
	evSCRTMVersion            uint32 = 0x00000008
	evEFIVariableDriverConfig uint32 = 0x80000001
	evEFIVariableBoot         uint32 = 0x80000002
	evEFIGPTEvent             uint32 = 0x80000006
	evEFIAction               uint32 = 0x80000007
	evEFIVariableBoot2        uint32 = 0x8000000c
	evEFIVariableAuthority    uint32 = 0x800000e0
	grubPrefixCommand                = "grub_cmd: "
	grubPrefixKernelCmdline          = "kernel_cmdline: "
	grubPrefixModuleCmdline          = "module_cmdline: "
)

// EventTypeName returns the PC Client spec's name of an event type
// ("EV_EFI_BOOT_SERVICES_APPLICATION"), or its number.
func EventTypeName(t uint32) string { return goattest.EventType(t).String() }

// dataCheck returns the alternatives of the bytes an event's digest must be
// the hash of, or nil when the event's digest is not defined over its data
// (code images, firmware blobs, IPL data other than GRUB's strings): those
// events' data is covered by nothing, and this package reports none of it.
// The event type is not covered by any digest either, so the GRUB rule
// goes by the data alone. The rules:
//
//   - PCR 8, data starting with "grub_cmd: ", "kernel_cmdline: " or
//     "module_cmdline: " (GRUB logs EV_IPL): GRUB measures the string after
//     the prefix, without the prefix and the terminating NUL it logs.
//   - EV_SEPARATOR, EV_S_CRTM_VERSION, EV_EFI_VARIABLE_DRIVER_CONFIG,
//     EV_EFI_GPT_EVENT, EV_EFI_ACTION, EV_EFI_VARIABLE_BOOT2: the event
//     data (PFP §10.4.1; the set systemd-pcrlock checks strictly).
//   - EV_EFI_VARIABLE_BOOT: the PFP says the UEFI_VARIABLE_DATA, EDK2 (and
//     so most firmware) measures only its VariableData: either is accepted.
//   - EV_EFI_VARIABLE_AUTHORITY: the event data; shim before commit
//     8a27a48 logged one byte more than it measured, so the data without
//     its last byte is accepted too (go-attestation does the same).
func dataCheck(pcr int, typ uint32, data []byte) [][]byte {
	if pcr == 8 {
		if _, text, ok := grubString(data); ok {
			return [][]byte{[]byte(text)}
		}
	}
	switch typ {
	case evSeparator, evSCRTMVersion, evEFIVariableDriverConfig, evEFIGPTEvent, evEFIAction, evEFIVariableBoot2:
		return [][]byte{data}
	case evEFIVariableBoot:
		alts := [][]byte{data}
		if v, ok := variableData(data); ok {
			alts = append(alts, v)
		}
		return alts
	case evEFIVariableAuthority:
		alts := [][]byte{data}
		if len(data) > 0 {
			alts = append(alts, data[:len(data)-1])
		}
		return alts
	}
	return nil
}

// matchesData reports whether digest is h of one of alts.
func matchesData(h crypto.Hash, digest []byte, alts [][]byte) bool {
	for _, a := range alts {
		d := h.New()
		d.Write(a)
		if bytes.Equal(d.Sum(nil), digest) {
			return true
		}
	}
	return false
}

// variableData returns the VariableData of a UEFI_VARIABLE_DATA structure
// (PFP §10.3.3: VariableName GUID, UnicodeNameLength u64,
// VariableDataLength u64, UnicodeName, VariableData; little-endian).
func variableData(b []byte) ([]byte, bool) {
	const hdr = 16 + 8 + 8
	if len(b) < hdr {
		return nil, false
	}
	nameLen := binary.LittleEndian.Uint64(b[16:])
	dataLen := binary.LittleEndian.Uint64(b[24:])
	rest := uint64(len(b) - hdr)
	if nameLen > rest/2 || dataLen > rest-2*nameLen {
		return nil, false
	}
	off := hdr + int(2*nameLen)
	return b[off : off+int(dataLen)], true
}

// grubString splits a GRUB PCR 8 event's data into its prefix and the
// measured text: the data is the prefix, the text and a NUL (GRUB logs the
// NUL but does not measure it).
func grubString(data []byte) (prefix, text string, ok bool) {
	s, _ := strings.CutSuffix(string(data), "\x00")
	for _, p := range []string{grubPrefixCommand, grubPrefixKernelCmdline, grubPrefixModuleCmdline} {
		if t, ok := strings.CutPrefix(s, p); ok {
			return p, t, true
		}
	}
	return "", "", false
}

// grubPath returns the path a GRUB PCR 9 event names: its data without the
// terminating NUL.
func grubPath(data []byte) (string, bool) {
	s, found := strings.CutSuffix(string(data), "\x00")
	if !found || s == "" || strings.IndexByte(s, 0) >= 0 {
		return "", false
	}
	return s, true
}

// sameGrubPath reports whether two GRUB paths name the same file: equal, or
// equal once a leading "(device)" is dropped from one of them (the linux
// command may name the kernel relative to $root while the file event names
// the device).
func sameGrubPath(a, b string) bool {
	if a == b {
		return true
	}
	return dropDevice(a) == dropDevice(b)
}

func dropDevice(p string) string {
	if strings.HasPrefix(p, "(") {
		if i := strings.IndexByte(p, ')'); i > 0 {
			return p[i+1:]
		}
	}
	return p
}
