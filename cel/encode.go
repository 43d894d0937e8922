package cel

import (
	"encoding/binary"
	"fmt"
)

// EncodedLen returns the length of r's TLV encoding.
func (r *Record) EncodedLen() int {
	n := tlvHeaderLen + recnumLen + tlvHeaderLen + pcrLen + tlvHeaderLen
	for _, d := range r.Digests {
		n += tlvHeaderLen + len(d.Value)
	}
	return n + contentHdrLen + len(r.Content)
}

// AppendBinary appends r's canonical TLV encoding to b. It returns an error,
// and b unchanged, if r cannot be encoded canonically: an unknown content
// type, no digests, an unsupported bank, digests out of order or duplicated,
// a digest of the wrong size, or content too large for a u32 length.
func (r *Record) AppendBinary(b []byte) ([]byte, error) {
	if err := r.checkEncodable(); err != nil {
		return b, err
	}
	digestsLen := 0
	for _, d := range r.Digests {
		digestsLen += tlvHeaderLen + len(d.Value)
	}
	b = appendTLVHeader(b, tlvRecNum, recnumLen)
	b = binary.BigEndian.AppendUint64(b, r.RecNum)
	b = appendTLVHeader(b, tlvPCR, pcrLen)
	b = append(b, r.PCR)
	b = appendTLVHeader(b, tlvDigests, digestsLen)
	for _, d := range r.Digests {
		id, _ := AlgID(d.Hash)
		b = appendTLVHeader(b, byte(id), len(d.Value))
		b = append(b, d.Value...)
	}
	var hdr [contentHdrLen]byte
	putContentHeader(hdr[:], r.Type, len(r.Content))
	b = append(b, hdr[:]...)
	return append(b, r.Content...), nil
}

// MarshalBinary returns r's canonical TLV encoding.
func (r *Record) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, r.EncodedLen()))
}

// Encode returns the concatenated encodings of recs: a CEL TLV log.
func Encode(recs []Record) ([]byte, error) {
	n := 0
	for i := range recs {
		n += recs[i].EncodedLen()
	}
	b := make([]byte, 0, n)
	for i := range recs {
		var err error
		if b, err = recs[i].AppendBinary(b); err != nil {
			return nil, fmt.Errorf("cel: encode record %d: %w", i, err)
		}
	}
	return b, nil
}

func (r *Record) checkEncodable() error {
	if !r.Type.Known() {
		return fmt.Errorf("cel: encode recnum %d: unknown content type %#04x", r.RecNum, uint16(r.Type))
	}
	if len(r.Digests) == 0 {
		return fmt.Errorf("cel: encode recnum %d: no digests", r.RecNum)
	}
	if uint64(len(r.Content)) > maxContentLen {
		return fmt.Errorf("cel: encode recnum %d: content is %d bytes, limit %d", r.RecNum, len(r.Content), maxContentLen)
	}
	prev := -1
	for _, d := range r.Digests {
		i, ok := bankIndex(d.Hash)
		if !ok {
			return fmt.Errorf("cel: encode recnum %d: %w: %v", r.RecNum, ErrUnknownBank, d.Hash)
		}
		if i <= prev {
			return fmt.Errorf("cel: encode recnum %d: digests not in ascending algorithm order at %s", r.RecNum, BankName(d.Hash))
		}
		prev = i
		if len(d.Value) != d.Hash.Size() {
			return fmt.Errorf("cel: encode recnum %d: %s digest is %d bytes, want %d", r.RecNum, BankName(d.Hash), len(d.Value), d.Hash.Size())
		}
	}
	return nil
}

func appendTLVHeader(b []byte, t byte, n int) []byte {
	b = append(b, t)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}
