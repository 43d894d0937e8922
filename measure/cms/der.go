package cms

import (
	"bytes"
	"slices"
)

// DER building blocks for Sign. Every length is minimal.

func derLen(n int) []byte {
	switch {
	case n < 0x80:
		return []byte{byte(n)}
	case n < 0x100:
		return []byte{0x81, byte(n)}
	case n < 0x10000:
		return []byte{0x82, byte(n >> 8), byte(n)}
	default:
		return []byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
}

func tlvBytes(tag byte, parts ...[]byte) []byte {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	l := derLen(n)
	out := make([]byte, 0, 1+len(l)+n)
	out = append(out, tag)
	out = append(out, l...)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func derSeq(parts ...[]byte) []byte { return tlvBytes(tagSequence, parts...) }

// derSetOf sorts the element encodings as DER requires for SET OF
// (X.690 11.6).
func derSetOf(tag byte, elems ...[]byte) []byte {
	s := slices.Clone(elems)
	slices.SortFunc(s, bytes.Compare)
	return tlvBytes(tag, s...)
}

func derOID(content []byte) []byte { return tlvBytes(tagOID, content) }

func derInt(v byte) []byte { return []byte{tagInteger, 1, v} }

var derNull = []byte{0x05, 0x00}
