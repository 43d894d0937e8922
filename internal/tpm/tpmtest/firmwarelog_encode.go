package tpmtest

import (
	"crypto"
	"encoding/binary"
	"slices"
)

// NewFirmwareEvent is one event for EncodeFirmwareLog: its PCR, type and
// data, and the bytes whose hash is its digest in every bank (nil: the
// data itself, as for separators, variables and EFI actions).
type NewFirmwareEvent struct {
	PCR      uint32
	Type     uint32
	Data     []byte
	Measured []byte
}

// EncodeFirmwareLog writes a crypto-agile TCG PC Client firmware event log
// (PFP §10): a Spec ID event (TCG_EfiSpecIDEvent, in a SHA-1
// TCG_PCR_EVENT) declaring banks, then each event as a TCG_PCR_EVENT2 with
// a digest in every bank. Tests and the demo make logs of their own with
// it; ParseFirmwareLog and go-attestation read it back.
func EncodeFirmwareLog(banks []crypto.Hash, events []NewFirmwareEvent) []byte {
	le := binary.LittleEndian
	banks = slices.Sorted(slices.Values(banks))
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = le.AppendUint32(spec, 0) // platform class: client
	spec = append(spec, 0, 2, 0, 2) // spec version 2.0, errata 0, UINTN of 8 bytes (2)
	spec = le.AppendUint32(spec, uint32(len(banks)))
	for _, h := range banks {
		spec = le.AppendUint16(spec, algID(h))
		spec = le.AppendUint16(spec, uint16(h.Size()))
	}
	spec = append(spec, 0) // no vendor info
	var b []byte
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, EVNoAction)
	b = append(b, make([]byte, 20)...)
	b = le.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	for _, e := range events {
		measured := e.Measured
		if measured == nil {
			measured = e.Data
		}
		b = le.AppendUint32(b, e.PCR)
		b = le.AppendUint32(b, e.Type)
		b = le.AppendUint32(b, uint32(len(banks)))
		for _, h := range banks {
			b = le.AppendUint16(b, algID(h))
			if e.Type == EVNoAction {
				b = append(b, make([]byte, h.Size())...)
				continue
			}
			d := h.New()
			d.Write(measured)
			b = d.Sum(b)
		}
		b = le.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

// algID is a bank's TPM_ALG_ID (TPM 2.0 Part 2 §6.3).
func algID(h crypto.Hash) uint16 {
	for id := uint16(0); id < 0x20; id++ {
		if x, ok := algHash(id); ok && x == h {
			return id
		}
	}
	panic("tpmtest: no TPM_ALG_ID for " + h.String())
}
