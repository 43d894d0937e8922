package lskel

import (
	"bytes"
	"strings"
	"testing"
)

// literalReference decodes a literal one step at a time, as the lexer did
// before it decoded in bulk: the reference literal must agree with.
func (l *lexer) literalReference(quote byte) ([]byte, error) {
	out := []byte{}
	for {
		c, ok := l.peek()
		switch {
		case !ok:
			return nil, l.errorf("unterminated literal")
		case c == '\n':
			return nil, l.errorf("newline in literal")
		case c == quote:
			l.advance()
			return out, nil
		case c != '\\':
			out = append(out, c)
			l.advance()
			continue
		}
		l.advance() // the backslash
		b, err := l.escape()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
}

// nextReference is the lexer's next as it was before identifiers were
// sliced and literals decoded in bulk: one byte at a time, each through
// peek. FuzzLexer holds the lexer to it.
func (l *lexer) nextReference() (token, error) {
	if err := l.skipSpace(); err != nil {
		return token{}, err
	}
	c, ok := l.peek()
	bol := l.nl
	l.nl = false
	if !ok {
		return token{kind: tokEOF, line: l.line, bol: true}, nil
	}
	line := l.line
	switch {
	case c == '"' || c == '\'':
		l.advance()
		s, err := l.literalReference(c)
		if err != nil {
			return token{}, err
		}
		kind := tokString
		if c == '\'' {
			kind = tokChar
		}
		return token{kind: kind, str: s, line: line, bol: bol}, nil
	case isIdentByte(c):
		var b []byte
		for {
			c, ok := l.peek()
			if !ok || !isIdentByte(c) {
				break
			}
			b = append(b, c)
			l.advance()
		}
		kind := tokWord
		if b[0] >= '0' && b[0] <= '9' {
			kind = tokNumber
		}
		return token{kind: kind, text: string(b), line: line, bol: bol}, nil
	default:
		l.advance()
		c2, ok := l.peek()
		switch {
		case c == '-' && ok && c2 == '>':
			l.advance()
			return token{kind: tokPunct, text: "->", line: line, bol: bol}, nil
		case ok && (c == '<' && (c2 == ':' || c2 == '%') || c == ':' && c2 == '>' || c == '%' && (c2 == ':' || c2 == '>')):
			return token{}, l.errorf("%s: digraph %c%c: bpftool writes none", quoteLine(l.src, line), c, c2)
		case c == '\\':
			return token{}, l.errorf("%s: backslash outside a literal: bpftool writes none", quoteLine(l.src, line))
		}
		return token{kind: tokPunct, text: string(rune(c)), line: line, bol: bol}, nil
	}
}

// checkLexer splits src into tokens with the lexer and with the reference
// and compares every token (kind, text, decoded bytes, line, start of
// line), the error that ends either, and where each stopped.
func checkLexer(t *testing.T, src []byte) {
	t.Helper()
	fast := lexer{src: src, line: 1}
	ref := lexer{src: src, line: 1}
	for n := 0; ; n++ {
		got, gerr := fast.next()
		want, werr := ref.nextReference()
		if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
			t.Fatalf("%q: token %d: error %v, reference %v", src, n, gerr, werr)
		}
		if gerr != nil {
			return
		}
		if got.kind != want.kind || got.text != want.text || !bytes.Equal(got.str, want.str) || got.line != want.line || got.bol != want.bol {
			t.Fatalf("%q: token %d: %+v, reference %+v", src, n, got, want)
		}
		if fast.pos != ref.pos || fast.line != ref.line || fast.nl != ref.nl {
			t.Fatalf("%q: token %d: lexer at %d line %d, reference at %d line %d", src, n, fast.pos, fast.line, ref.pos, ref.line)
		}
		if got.kind == tokEOF {
			return
		}
	}
}

// FuzzLexer: the lexer reads any input as the byte-at-a-time reference
// does, token for token.
func FuzzLexer(f *testing.F) {
	for _, s := range []string{"a\\\nb c", "x1\\\r\nab->c", "12ab \"\\x41\\\n\\0\" 'c'", "a\\", "skel -> bss = x(\"\\0\\1\");"} {
		f.Add([]byte(s))
	}
	// Windows of the fixture headers, not whole ones: the fuzzer
	// minimises every new input it keeps, which takes minutes on tens of
	// kilobytes. TestLexerHeaders reads the whole headers.
	for _, file := range headerFiles() {
		src := readLskel(f, "headers/"+file)
		for _, at := range []string{"", "static inline int", `opts_insn[] __attribute__((__aligned__(8))) = "`} {
			if i := bytes.Index(src, []byte(at)); i >= 0 {
				f.Add(src[i:min(len(src), i+1024)])
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		checkLexer(t, src)
	})
}

// TestLexerHeaders: the lexer reads every fixture header as the reference
// does.
func TestLexerHeaders(t *testing.T) {
	for _, file := range headerFiles() {
		checkLexer(t, readLskel(t, "headers/"+file))
	}
}

// checkLiteral decodes src (after an opening quote) both ways and compares
// the bytes, the error, and where each left the lexer.
func checkLiteral(t *testing.T, src []byte, quote byte) {
	t.Helper()
	fast := lexer{src: src, line: 1}
	ref := lexer{src: src, line: 1}
	got, gerr := fast.literal(quote)
	want, werr := ref.literalReference(quote)
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		t.Fatalf("%q: error %v, reference %v", src, gerr, werr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%q: %q, reference %q", src, got, want)
	}
	if gerr == nil && (fast.pos != ref.pos || fast.line != ref.line) {
		t.Fatalf("%q: stopped at %d line %d, reference at %d line %d", src, fast.pos, fast.line, ref.pos, ref.line)
	}
}

// TestLiteralBulk covers the escapes the bulk decoder takes and those it
// leaves to the general one, each where a splice or a digit could change
// what it means.
func TestLiteralBulk(t *testing.T) {
	for _, src := range []string{
		`\x12\0\0\xff";`,
		"\\x12\\\n\\0\\0\";",
		"\\x1\\\n2\";",   // a splice inside a hex escape
		"\\x12\\\n3\";",  // a splice, then a digit the escape takes
		"\\x123\";",      // three digits: out of range
		"\\x001\";",      // three digits, in range
		"\\0\\\n1\";",    // a splice inside an octal escape
		"\\01\\\n2\";",   // three octal digits across a splice
		"\\\\\nn\";",     // a backslash, a splice: \n
		"\\\\\\\nn\";",   // an escaped backslash, a splice, n
		"\\\\\r\nn\";",   // a CRLF splice after a backslash
		"\\\r\n\\x41\";", // a CRLF splice
		"\\\rx\";",       // a backslash and a lone CR: an error
		"ab\\n\\t\\\"\\'\\?\\a\\b\\f\\r\\v\";",
		"\\q\";",    // unknown escape
		"\\x\";",    // no digits
		"abc",       // unterminated
		"ab\ncd\";", // newline
		"\\x4",      // ends in an escape
		"\\",        // ends after a backslash
		"\\\n",      // ends after a splice
		"\\x41\\",   // ends in a backslash
		"'\\x41'",
		strings.Repeat(`\x30\0`, 100) + "\\\n" + strings.Repeat(`\xab`, 50) + `";`,
	} {
		checkLiteral(t, []byte(src), '"')
		checkLiteral(t, []byte(src), '\'')
	}
}

// FuzzLiteral: the bulk decoder agrees with the reference on any input.
func FuzzLiteral(f *testing.F) {
	for _, s := range []string{`\x12\0\xff"`, "\\x1\\\n2\"", "\\0\\\n1\"", "\\\\\nn\"", "ab\\\r\n\\x41\"", `\x001"`} {
		f.Add([]byte(s))
	}
	for _, file := range headerFiles() {
		src := readLskel(f, "headers/"+file)
		if i := bytes.Index(src, []byte(`opts_insn[] __attribute__((__aligned__(8))) = "`)); i >= 0 {
			start := i + len(`opts_insn[] __attribute__((__aligned__(8))) = "`)
			f.Add(src[start:min(len(src), start+600)])
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		checkLiteral(t, src, '"')
	})
}

// TestNextCToken: the tokens statement expects are the lexer's tokens of
// the same source.
func TestNextCToken(t *testing.T) {
	for _, src := range append(append(append([]string{"(struct counter_lskel *skel) {", "__attribute__((__aligned__(8)))",
		"static const char opts_data[]", "="}, loadHead...), loadSigned...), loadTail...) {
		lx := lexer{src: []byte(src), line: 1}
		rest := src
		for {
			want, err := lx.next()
			if err != nil {
				t.Fatal(err)
			}
			kind, text, r := nextCToken(rest)
			rest = r
			if kind != want.kind || text != want.text {
				t.Fatalf("%q: token %v %q, the lexer reads %v %q", src, kind, text, want.kind, want.text)
			}
			if kind == tokEOF {
				break
			}
		}
	}
}

// BenchmarkLiteral decodes a 200 KB string literal as bpftool writes one
// (\xNN, \0 for zero bytes, a line splice every 80 columns): one in four
// bytes zero, as in a loader's data.
func BenchmarkLiteral(b *testing.B) {
	raw := make([]byte, 60<<10)
	for i := range raw {
		if i%4 != 0 {
			raw[i] = byte(i*7 + 1)
		}
	}
	src := []byte("\\\n" + cString(raw) + "\";")
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		lx := lexer{src: src, line: 1}
		got, err := lx.literal('"')
		if err != nil || !bytes.Equal(got, raw) {
			b.Fatalf("decoded %d bytes (%v), want %d", len(got), err, len(raw))
		}
	}
}
