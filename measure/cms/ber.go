package cms

// This file mirrors the acceptance rules of the kernel's table-driven ASN.1
// BER decoder (lib/asn1_decoder.c) for the grammar the PKCS#7 parser walks
// (crypto/asymmetric_keys/pkcs7.asn1). Each rule and its reason is listed in
// docs/cms-verification.md; the short version:
//
//   - tags: only low tag numbers (a tag byte with all five low bits set is
//     refused); where the grammar expects a constructed type the
//     constructed bit of the data is not compared, where it expects a
//     primitive type the tag byte must match exactly;
//   - lengths: short form, long form with one or two length octets
//     (minimal or not), or indefinite for constructed encodings only;
//   - a constructed element with a definite length must be filled exactly;
//     one with an indefinite length ends with 00 00;
//   - ANY values with an indefinite length are measured by scanning for the
//     matching end-of-contents (up to seven length octets inside);
//   - SET OF and SEQUENCE OF hold at least one element;
//   - the whole blob is at most 65535 bytes and bytes after the outer
//     element are ignored.

const (
	tagLongForm  = 0x1f
	tagConsBit   = 0x20
	lenIndef     = 0x80
	maxBERLength = 65535
)

// cursor walks one constructed level of the input. end is the limit the
// kernel calls datalen: the end of the innermost definite container, or of
// the enclosing one when the current container has an indefinite length.
type cursor struct {
	data []byte
	dp   int
	end  int
	ber  *bool // set when a non-DER form is seen
}

// tlv is one decoded element.
type tlv struct {
	tag     byte
	off     int    // offset of the tag byte
	hdr     int    // header length: 2 for indefinite, 2+n for long form
	content []byte // content octets; for an indefinite constructed element
	// parsed as a container, without the end-of-contents octets
	indef bool
}

// frame is an entered constructed element.
type frame struct {
	tlv
	parentEnd int // the enclosing limit to restore
	start     int // offset of the first content octet
}

func (c *cursor) errf(field, errno, format string, args ...any) *ParseError {
	return newParseError(c.dp, field, errno, ErrMalformed, format, args...)
}

// atEnd reports whether the current definite container is exhausted; the
// kernel skips optional elements there without reading a tag.
func (c *cursor) atEnd() bool { return c.dp == c.end }

// peek returns the next tag byte, failing like the kernel when fewer than
// two bytes remain in the container.
func (c *cursor) peek(field string) (byte, error) {
	if c.end-c.dp < 2 {
		return 0, c.errf(field, "EBADMSG", "data overrun: need a tag and a length")
	}
	t := c.data[c.dp]
	if t&tagLongForm == tagLongForm {
		return 0, c.errf(field, "EBADMSG", "high tag number form not supported (tag %#02x)", t)
	}
	return t, nil
}

// tagMatches applies the kernel's comparison: the constructed bit of the
// data is ignored when the expected tag is constructed.
func tagMatches(want, got byte) bool {
	x := want ^ got
	x &^= want & tagConsBit
	return x == 0
}

// header reads the tag at dp (already validated by peek) and its length.
// It returns the content length (or -1 for indefinite) and header size.
func (c *cursor) header(field string) (tag byte, length, hdr int, err error) {
	tag = c.data[c.dp]
	p := c.dp + 1
	l := int(c.data[p])
	p++
	hdr = 2
	switch {
	case l < 0x80:
		length = l
	case l == lenIndef:
		if tag&tagConsBit == 0 {
			return 0, 0, 0, c.errf(field, "EBADMSG", "indefinite length on a primitive encoding")
		}
		if c.end-p < 2 {
			return 0, 0, 0, c.errf(field, "EBADMSG", "data overrun after indefinite length")
		}
		*c.ber = true
		return tag, -1, 2, nil
	default:
		n := l - 0x80
		if n > 2 {
			return 0, 0, 0, c.errf(field, "EBADMSG", "length with %d octets not supported (kernel limit 2)", n)
		}
		if n > c.end-p {
			return 0, 0, 0, c.errf(field, "EBADMSG", "data overrun in length octets")
		}
		for i := 0; i < n; i++ {
			length = length<<8 | int(c.data[p])
			p++
		}
		hdr += n
		if length < 0x80 || (n == 2 && length < 0x100) {
			*c.ber = true // non-minimal length encoding
		}
	}
	if length > c.end-p {
		return 0, 0, 0, c.errf(field, "EBADMSG", "data overrun: length %d exceeds the %d bytes left", length, c.end-p)
	}
	return tag, length, hdr, nil
}

// enter matches a constructed element the grammar descends into.
func (c *cursor) enter(want byte, field string) (*frame, error) {
	t, err := c.peek(field)
	if err != nil {
		return nil, err
	}
	if !tagMatches(want, t) {
		return nil, c.errf(field, "EBADMSG", "unexpected tag %#02x, want %#02x", t, want)
	}
	off := c.dp
	_, length, hdr, err := c.header(field)
	if err != nil {
		return nil, err
	}
	f := &frame{tlv: tlv{tag: t, off: off, hdr: hdr, indef: length < 0}, parentEnd: c.end, start: off + hdr}
	c.dp = off + hdr
	if length >= 0 {
		c.end = c.dp + length
	}
	return f, nil
}

// more reports whether a SET OF / SEQUENCE OF has another element.
func (c *cursor) more(f *frame, field string) (bool, error) {
	if !f.indef {
		return c.dp < c.end, nil
	}
	if c.end-c.dp < 2 {
		return false, c.errf(field, "EBADMSG", "data overrun looking for end-of-contents")
	}
	return c.data[c.dp] != 0, nil
}

// leave closes a frame opened by enter and fills in its content.
func (c *cursor) leave(f *frame, field string) error {
	if f.indef {
		if c.end-c.dp < 2 {
			return c.errf(field, "EBADMSG", "data overrun looking for end-of-contents")
		}
		if c.data[c.dp] != 0 {
			return c.errf(field, "EBADMSG", "missing end-of-contents in indefinite-length element")
		}
		if c.data[c.dp+1] != 0 {
			return c.errf(field, "EBADMSG", "invalid end-of-contents length octet")
		}
		f.content = c.data[f.start:c.dp]
		c.dp += 2
	} else {
		if c.dp != c.end {
			return c.errf(field, "EBADMSG", "constructed length mismatch: %d bytes unused", c.end-c.dp)
		}
		f.content = c.data[f.start:c.dp]
	}
	c.end = f.parentEnd
	return nil
}

// leaf reads a primitive element whose tag must match exactly.
func (c *cursor) leaf(want byte, field string) (tlv, error) {
	t, err := c.peek(field)
	if err != nil {
		return tlv{}, err
	}
	if !tagMatches(want, t) {
		return tlv{}, c.errf(field, "EBADMSG", "unexpected tag %#02x, want %#02x", t, want)
	}
	return c.value(field)
}

// any reads an element of any (low-number) tag without descending into it.
func (c *cursor) any(field string) (tlv, error) {
	if _, err := c.peek(field); err != nil {
		return tlv{}, err
	}
	return c.value(field)
}

// value reads the element at dp as a leaf. An indefinite length (allowed
// only for constructed encodings) is resolved by scanning for the matching
// end-of-contents; the content then includes those two octets, as the
// kernel passes it to its action functions.
func (c *cursor) value(field string) (tlv, error) {
	off := c.dp
	t, length, hdr, err := c.header(field)
	if err != nil {
		return tlv{}, err
	}
	start := off + hdr
	if length < 0 {
		n, err := findIndefiniteLength(c.data[:c.end], start)
		if err != nil {
			return tlv{}, newParseError(start, field, "EBADMSG", ErrMalformed, "%v", err)
		}
		length = n
	}
	c.dp = start + length
	return tlv{tag: t, off: off, hdr: hdr, content: c.data[start : start+length], indef: hdr == 2 && c.data[off+1] == lenIndef}, nil
}

// findIndefiniteLength returns the number of bytes from start through the
// end-of-contents that closes an indefinite-length element, scanning nested
// elements the way the kernel does (high tag numbers are skipped here, and
// up to seven length octets are allowed).
func findIndefiniteLength(data []byte, start int) (int, error) {
	dp, level := start, 1
	for {
		if len(data)-dp < 2 {
			return 0, errString("missing end-of-contents in indefinite-length value")
		}
		tag := data[dp]
		dp++
		if tag == 0 {
			if data[dp] != 0 {
				return 0, errString("invalid end-of-contents length octet")
			}
			dp++
			level--
			if level == 0 {
				return dp - start, nil
			}
			continue
		}
		if tag&tagLongForm == tagLongForm {
			for {
				if len(data)-dp < 2 {
					return 0, errString("data overrun in high tag number")
				}
				b := data[dp]
				dp++
				if b&0x80 == 0 {
					break
				}
			}
		}
		l := int(data[dp])
		dp++
		if l == lenIndef {
			if tag&tagConsBit == 0 {
				return 0, errString("indefinite length on a primitive encoding")
			}
			level++
			continue
		}
		if l > 0x7f {
			n := l - 0x80
			if n > 7 {
				return 0, errString("unsupported length")
			}
			if n > len(data)-dp {
				return 0, errString("data overrun in length octets")
			}
			l = 0
			for ; n > 0; n-- {
				if l > maxBERLength {
					return 0, errString("data overrun")
				}
				l = l<<8 | int(data[dp])
				dp++
			}
		}
		if l > len(data)-dp {
			return 0, errString("data overrun")
		}
		dp += l
	}
}

type errString string

func (e errString) Error() string { return string(e) }
