package tpm

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// akBlobMagic starts every AK blob file; its last byte is the format
// version.
var akBlobMagic = [8]byte{'b', 'p', 'f', 'a', 'k', 0, 0, 1}

// akBlob is the on-disk form of an attestation key, all integers big-endian:
//
//	magic         [8]byte         "bpfak\0\0\x01"
//	parentHandle  u32             persistent handle of the AK's parent key
//	parentName    u16 n, n bytes  TPM2B_NAME of that parent when the AK was made
//	public        u16 n, n bytes  TPM2B_PUBLIC: the AK's TPMT_PUBLIC
//	private       u16 n, n bytes  TPM2B_PRIVATE: the AK's sensitive area,
//	                              wrapped by the parent (TPM 2.0 Part 1 §23)
//
// and nothing after. The private part is useless outside the TPM that holds
// the parent, so the file is not secret; it is written 0600 all the same.
type akBlob struct {
	parentHandle uint32
	parentName   []byte
	public       []byte // TPMT_PUBLIC
	private      []byte // TPM2B_PRIVATE contents
}

func (b akBlob) marshal() []byte {
	var w bytes.Buffer
	w.Write(akBlobMagic[:])
	w.Write(binary.BigEndian.AppendUint32(nil, b.parentHandle))
	for _, f := range [][]byte{b.parentName, b.public, b.private} {
		w.Write(binary.BigEndian.AppendUint16(nil, uint16(len(f))))
		w.Write(f)
	}
	return w.Bytes()
}

// parseAKBlob parses an AK blob and its public area. Errors name the field
// and offset.
func parseAKBlob(data []byte) (akBlob, *tpm2.TPMTPublic, error) {
	var b akBlob
	if len(data) < len(akBlobMagic)+4 {
		return b, nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrBadAKBlob, len(data))
	}
	if !bytes.Equal(data[:len(akBlobMagic)], akBlobMagic[:]) {
		return b, nil, fmt.Errorf("%w: offset 0: bad magic or version % x", ErrBadAKBlob, data[:len(akBlobMagic)])
	}
	off := len(akBlobMagic)
	b.parentHandle = binary.BigEndian.Uint32(data[off:])
	off += 4
	fields := []struct {
		name string
		dst  *[]byte
	}{{"parent name", &b.parentName}, {"public", &b.public}, {"private", &b.private}}
	for _, f := range fields {
		if len(data)-off < 2 {
			return b, nil, fmt.Errorf("%w: offset %d: %s: size field truncated", ErrBadAKBlob, off, f.name)
		}
		n := int(binary.BigEndian.Uint16(data[off:]))
		off += 2
		if len(data)-off < n {
			return b, nil, fmt.Errorf("%w: offset %d: %s: %d bytes announced, %d left", ErrBadAKBlob, off, f.name, n, len(data)-off)
		}
		*f.dst = bytes.Clone(data[off : off+n])
		off += n
	}
	if off != len(data) {
		return b, nil, fmt.Errorf("%w: offset %d: %d trailing bytes", ErrBadAKBlob, off, len(data)-off)
	}
	if len(b.public) == 0 || len(b.private) == 0 {
		return b, nil, fmt.Errorf("%w: empty public or private area", ErrBadAKBlob)
	}
	pub, err := unmarshalPublic(b.public)
	if err != nil {
		return b, nil, fmt.Errorf("%w: public: %v", ErrBadAKBlob, err)
	}
	return b, pub, nil
}

// unmarshalPublic parses a TPMT_PUBLIC that must fill data exactly.
func unmarshalPublic(data []byte) (*tpm2.TPMTPublic, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](data)
	if err != nil {
		return nil, err
	}
	if n := len(tpm2.Marshal(pub)); n != len(data) {
		return nil, fmt.Errorf("TPMT_PUBLIC is %d bytes with %d trailing", n, len(data)-n)
	}
	return pub, nil
}
