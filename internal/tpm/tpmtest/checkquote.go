package tpmtest

import (
	"crypto"
	"encoding/binary"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// CheckquotePCRFile writes PCR values in tpm2-tools' "pcrs" C-struct file
// layout (little-endian on the hosts tpm2-tools runs on): a TPML_PCR_SELECTION
// struct (u32 count, 16 × {u16 hash, u8 sizeofSelect, u8[4] bitmap}, padded
// to 132 bytes), a u32 count of TPML_DIGEST structs, then each TPML_DIGEST
// (u32 count, 8 × {u16 size, u8[64]}), 532 bytes. tpm2_checkquote -f
// reads it without -l, for any number of PCRs (its raw values format takes
// at most 7 in tpm2-tools 5.4). vals are in selection order, banks
// ascending, PCRs 0..23.
func CheckquotePCRFile(vals []tpm.PCRValue) []byte {
	le := binary.LittleEndian
	type bank struct {
		alg    uint16
		bitmap [4]byte
	}
	algs := map[crypto.Hash]uint16{crypto.SHA1: 0x4, crypto.SHA256: 0xb, crypto.SHA384: 0xc, crypto.SHA512: 0xd}
	var banks []bank
	for _, v := range vals {
		if len(banks) == 0 || banks[len(banks)-1].alg != algs[v.Bank] {
			banks = append(banks, bank{alg: algs[v.Bank]})
		}
		banks[len(banks)-1].bitmap[v.Index/8] |= 1 << (v.Index % 8)
	}
	out := make([]byte, 132)
	le.PutUint32(out, uint32(len(banks)))
	for i, b := range banks {
		o := 4 + i*8
		le.PutUint16(out[o:], b.alg)
		out[o+2] = 3
		copy(out[o+3:o+7], b.bitmap[:])
	}
	out = le.AppendUint32(out, uint32((len(vals)+7)/8))
	for i := 0; i < len(vals); i += 8 {
		blk := make([]byte, 532)
		chunk := vals[i:min(len(vals), i+8)]
		le.PutUint32(blk, uint32(len(chunk)))
		for j, v := range chunk {
			le.PutUint16(blk[4+j*66:], uint16(len(v.Digest)))
			copy(blk[6+j*66:], v.Digest)
		}
		out = append(out, blk...)
	}
	return out
}
