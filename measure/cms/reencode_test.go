package cms

import (
	"fmt"
	"testing"
)

// node is a DER element tree used by the tests to re-encode valid
// signatures in the BER forms the kernel accepts.
type node struct {
	tag      byte
	content  []byte // primitive content
	children []*node
	cons     bool
}

// parseDER reads a strict DER tree (tests feed it this package's and
// bpftool's DER output only).
func parseDER(tb testing.TB, b []byte) *node {
	tb.Helper()
	n, rest, err := parseNode(b)
	if err != nil || len(rest) != 0 {
		tb.Fatalf("parseDER: %v (%d bytes left)", err, len(rest))
	}
	return n
}

func parseNode(b []byte) (*node, []byte, error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("short")
	}
	tag, l := b[0], int(b[1])
	p := 2
	if l >= 0x80 {
		n := l - 0x80
		l = 0
		for i := 0; i < n; i++ {
			l = l<<8 | int(b[p+i])
		}
		p += n
	}
	if p+l > len(b) {
		return nil, nil, fmt.Errorf("overrun")
	}
	body := b[p : p+l]
	n := &node{tag: tag, cons: tag&tagConsBit != 0}
	if !n.cons {
		n.content = body
		return n, b[p+l:], nil
	}
	for len(body) > 0 {
		c, rest, err := parseNode(body)
		if err != nil {
			return nil, nil, err
		}
		n.children = append(n.children, c)
		body = rest
	}
	return n, b[p+l:], nil
}

// encStyle decides how each element's length is written.
type encStyle struct {
	// indef reports whether a constructed element at this depth (0 =
	// outer ContentInfo) gets an indefinite length.
	indef func(depth int, n *node) bool
	// longLen, when > 0, writes every definite length with that many
	// length octets (non-minimal long form).
	longLen int
}

func (n *node) encode(s encStyle, depth int) []byte {
	var body []byte
	if n.cons {
		for _, c := range n.children {
			body = append(body, c.encode(s, depth+1)...)
		}
	} else {
		body = n.content
	}
	out := []byte{n.tag}
	if n.cons && s.indef != nil && s.indef(depth, n) {
		out = append(out, lenIndef)
		out = append(out, body...)
		return append(out, 0, 0)
	}
	if s.longLen > 0 {
		out = append(out, 0x80|byte(s.longLen))
		for i := s.longLen - 1; i >= 0; i-- {
			out = append(out, byte(len(body)>>(8*i)))
		}
		return append(out, body...)
	}
	out = append(out, derLen(len(body))...)
	return append(out, body...)
}
