package lskel

import (
	"errors"
	"fmt"
)

// MaxHeaderSize bounds the C header accepted by ParseHeader. bpftool writes
// up to four characters per blob byte, so this leaves room for a blob of
// MaxDataSize plus the loader and signature.
const MaxHeaderSize = 96 << 20

// ParseHeader reads a bpftool-generated light-skeleton header (.lskel.h),
// signed or unsigned.
//
// It understands the C that `bpftool gen skeleton -L [-S]` writes: the
// arrays opts_insn, opts_data, opts_sig and opts_excl_hash, declared
// `static const char NAME[] [__attribute__((...))] = "...";` with C string
// escapes, line continuations and adjacent-literal concatenation; each
// `data` array of __open() followed by `skel->MEMBER = ... skel_prep_map_data`;
// and the skeleton struct `struct NAME { struct bpf_loader_ctx ctx; ...`.
// Comments and whitespace may vary. The array's value is the literal's bytes
// without the implicit trailing NUL (the header uses `sizeof(NAME) - 1`).
//
// The keyring id of a header artifact is 0: bpftool leaves it to the caller.
func ParseHeader(src []byte) (*Artifact, error) {
	if len(src) > MaxHeaderSize {
		return nil, &FormatError{Part: "header", Err: tooLarge(len(src), MaxHeaderSize)}
	}
	p := &headerParser{lx: lexer{src: src, line: 1}, seen: map[string]int{}}
	if err := p.run(); err != nil {
		return nil, err
	}
	a := &Artifact{
		Name:      p.name,
		Insns:     p.arrays["opts_insn"],
		Data:      p.arrays["opts_data"],
		Signature: p.arrays["opts_sig"],
		ExclHash:  p.arrays["opts_excl_hash"],
		Globals:   p.globals,
		Source:    FormatHeader,
	}
	for _, name := range []string{"opts_insn", "opts_data"} {
		if _, ok := p.seen[name]; !ok {
			return nil, &FormatError{Part: "header", Field: name, Err: errors.New("array not found")}
		}
	}
	if _, ok := p.seen["opts_sig"]; ok != (a.ExclHash != nil) {
		return nil, &FormatError{Part: "header", Field: "opts_sig", Err: errors.New("opts_sig and opts_excl_hash must appear together")}
	}
	if err := a.validate(); err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Part = "header"
			if line, ok := p.seen[headerArrayOf(fe.Field)]; ok {
				fe.Where = fmt.Sprintf("line %d", line)
			}
		}
		return nil, err
	}
	return a, nil
}

// headerArrayOf maps an artifact field name to the header array carrying it.
func headerArrayOf(field string) string {
	switch field {
	case "insns":
		return "opts_insn"
	case "data":
		return "opts_data"
	case "signature":
		return "opts_sig"
	case "excl_hash":
		return "opts_excl_hash"
	}
	return ""
}

// headerParser recognises the few declarations of interest in the token
// stream and skips everything else.
type headerParser struct {
	lx      lexer
	back    *token // one token of push-back
	name    string
	arrays  map[string][]byte
	seen    map[string]int // array name -> line of its literal
	globals []GlobalData
}

func (p *headerParser) next() (token, error) {
	if p.back != nil {
		t := *p.back
		p.back = nil
		return t, nil
	}
	return p.lx.next()
}

func (p *headerParser) unread(t token) { p.back = &t }

func (p *headerParser) run() error {
	p.arrays = map[string][]byte{}
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		switch {
		case t.kind == tokEOF:
			if p.name == "" {
				return &FormatError{Part: "header", Field: "skeleton struct", Err: errors.New("`struct NAME { struct bpf_loader_ctx ctx; ...` not found")}
			}
			return nil
		case t.isWord("static"):
			if err := p.array(); err != nil {
				return err
			}
		case t.isWord("struct"):
			if err := p.skeletonStruct(); err != nil {
				return err
			}
		}
	}
}

// expect reads the next token and reports whether it is the given word or
// punctuation; on mismatch the token is pushed back.
func (p *headerParser) expect(text string) (bool, error) {
	t, err := p.next()
	if err != nil {
		return false, err
	}
	if (t.kind == tokWord || t.kind == tokPunct) && t.text == text {
		return true, nil
	}
	p.unread(t)
	return false, nil
}

func (p *headerParser) expectAll(texts ...string) (bool, error) {
	for _, s := range texts {
		if ok, err := p.expect(s); !ok || err != nil {
			return false, err
		}
	}
	return true, nil
}

func (p *headerParser) word() (string, error) {
	t, err := p.next()
	if err != nil {
		return "", err
	}
	if t.kind != tokWord {
		p.unread(t)
		return "", nil
	}
	return t.text, nil
}

// skeletonStruct matches `struct NAME { struct bpf_loader_ctx ctx ;`.
func (p *headerParser) skeletonStruct() error {
	name, err := p.word()
	if name == "" || err != nil {
		return err
	}
	ok, err := p.expectAll("{", "struct", "bpf_loader_ctx", "ctx", ";")
	if !ok || err != nil {
		return err
	}
	if p.name != "" && p.name != name {
		return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", p.lx.line), Field: "skeleton struct", Err: fmt.Errorf("second skeleton struct %q after %q", name, p.name)}
	}
	p.name = name
	return nil
}

// array matches `const char NAME [ ] [__attribute__((...))] = "..." ... ;`
// after `static`.
func (p *headerParser) array() error {
	ok, err := p.expectAll("const", "char")
	if !ok || err != nil {
		return err
	}
	name, err := p.word()
	if name == "" || err != nil {
		return err
	}
	if ok, err := p.expectAll("[", "]"); !ok || err != nil {
		return err
	}
	if ok, err := p.expect("__attribute__"); err != nil {
		return err
	} else if ok {
		if err := p.skipParens(); err != nil {
			return err
		}
	}
	if ok, err := p.expect("="); !ok || err != nil {
		return err
	}
	var (
		value []byte
		line  int
		n     int
	)
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t.kind != tokString {
			p.unread(t)
			break
		}
		if n == 0 {
			line = t.line
		}
		n++
		value = append(value, t.str...)
	}
	if n == 0 {
		return nil // not initialised from a string literal: not ours
	}
	if ok, err := p.expect(";"); err != nil {
		return err
	} else if !ok {
		return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", p.lx.line), Field: name, Err: errors.New("string literal not followed by ';'")}
	}
	switch name {
	case "opts_insn", "opts_data", "opts_sig", "opts_excl_hash":
		if prev, dup := p.seen[name]; dup {
			return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", line), Field: name, Err: fmt.Errorf("duplicate array (first at line %d)", prev)}
		}
		if value == nil {
			value = []byte{}
		}
		p.seen[name] = line
		p.arrays[name] = value
	case "data":
		member, err := p.globalMember(line)
		if err != nil {
			return err
		}
		if len(p.globals) >= MaxGlobals {
			return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", line), Field: "data", Err: fmt.Errorf("more than %d arrays: %w", MaxGlobals, ErrTooLarge)}
		}
		p.globals = append(p.globals, GlobalData{Name: member, Data: value})
	}
	return nil
}

// globalMember reads `skel -> MEMBER =` that follows a `data` array.
func (p *headerParser) globalMember(line int) (string, error) {
	fail := &FormatError{Part: "header", Where: fmt.Sprintf("line %d", line), Field: "data", Err: errors.New("not followed by `skel->MEMBER = ...skel_prep_map_data(...)`")}
	ok, err := p.expectAll("skel", "->")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fail
	}
	member, err := p.word()
	if err != nil {
		return "", err
	}
	if ok, err := p.expect("="); err != nil {
		return "", err
	} else if !ok || member == "" {
		return "", fail
	}
	// The right-hand side must call skel_prep_map_data on this array
	// before the statement ends.
	for {
		t, err := p.next()
		if err != nil {
			return "", err
		}
		switch {
		case t.kind == tokEOF || t.kind == tokPunct && t.text == ";":
			return "", fail
		case t.isWord("skel_prep_map_data"):
			return member, nil
		}
	}
}

// maxAttrTokens bounds the tokens of one __attribute__((...)).
const maxAttrTokens = 256

func (p *headerParser) skipParens() error {
	depth := 0
	for i := 0; i < maxAttrTokens; i++ {
		t, err := p.next()
		if err != nil {
			return err
		}
		switch {
		case t.kind == tokEOF:
			return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", t.line), Err: errors.New("unterminated __attribute__")}
		case t.kind == tokPunct && t.text == "(":
			depth++
		case t.kind == tokPunct && t.text == ")":
			depth--
		case depth == 0:
			p.unread(t)
			return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", t.line), Err: errors.New("__attribute__ without parentheses")}
		}
		if depth == 0 {
			return nil
		}
	}
	return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", p.lx.line), Err: fmt.Errorf("__attribute__ longer than %d tokens", maxAttrTokens)}
}

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokWord
	tokNumber
	tokPunct
	tokString
	tokChar
)

type token struct {
	kind tokKind
	text string // word, number or punctuation
	str  []byte // decoded string literal
	line int
}

func (t token) isWord(w string) bool { return t.kind == tokWord && t.text == w }

// lexer splits C source into tokens. It applies translation phase 2 (a
// backslash-newline splice disappears wherever it occurs), skips comments
// and whitespace, and decodes string literals (C11 6.4.4.4, 6.4.5).
type lexer struct {
	src  []byte
	pos  int
	line int
}

func (l *lexer) errorf(format string, args ...any) error {
	return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", l.line), Err: fmt.Errorf(format, args...)}
}

// peek returns the next source byte after any line splices.
func (l *lexer) peek() (byte, bool) {
	for l.pos+1 < len(l.src) && l.src[l.pos] == '\\' {
		switch {
		case l.src[l.pos+1] == '\n':
			l.pos += 2
		case l.src[l.pos+1] == '\r' && l.pos+2 < len(l.src) && l.src[l.pos+2] == '\n':
			l.pos += 3
		default:
			return '\\', true
		}
		l.line++
	}
	if l.pos >= len(l.src) {
		return 0, false
	}
	return l.src[l.pos], true
}

func (l *lexer) advance() {
	if l.src[l.pos] == '\n' {
		l.line++
	}
	l.pos++
}

func (l *lexer) next() (token, error) {
	if err := l.skipSpace(); err != nil {
		return token{}, err
	}
	c, ok := l.peek()
	if !ok {
		return token{kind: tokEOF, line: l.line}, nil
	}
	line := l.line
	switch {
	case c == '"' || c == '\'':
		l.advance()
		s, err := l.literal(c)
		if err != nil {
			return token{}, err
		}
		kind := tokString
		if c == '\'' {
			kind = tokChar
		}
		return token{kind: kind, str: s, line: line}, nil
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
		return token{kind: kind, text: string(b), line: line}, nil
	default:
		l.advance()
		if c == '-' {
			if c2, ok := l.peek(); ok && c2 == '>' {
				l.advance()
				return token{kind: tokPunct, text: "->", line: line}, nil
			}
		}
		return token{kind: tokPunct, text: string(rune(c)), line: line}, nil
	}
}

func (l *lexer) skipSpace() error {
	for {
		c, ok := l.peek()
		if !ok {
			return nil
		}
		switch c {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			l.advance()
			continue
		case '/':
			if l.pos+1 >= len(l.src) {
				return nil
			}
			save, saveLine := l.pos, l.line
			l.advance()
			c2, _ := l.peek()
			switch c2 {
			case '/':
				for {
					c, ok := l.peek()
					if !ok || c == '\n' {
						break
					}
					l.advance()
				}
				continue
			case '*':
				l.advance()
				if err := l.blockComment(saveLine); err != nil {
					return err
				}
				continue
			}
			l.pos, l.line = save, saveLine
		}
		return nil
	}
}

func (l *lexer) blockComment(start int) error {
	star := false
	for {
		c, ok := l.peek()
		if !ok {
			return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", start), Err: errors.New("unterminated comment")}
		}
		l.advance()
		if star && c == '/' {
			return nil
		}
		star = c == '*'
	}
}

// literal decodes a string or character literal after its opening quote.
func (l *lexer) literal(quote byte) ([]byte, error) {
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

func (l *lexer) escape() (byte, error) {
	c, ok := l.peek()
	if !ok {
		return 0, l.errorf("unterminated escape")
	}
	l.advance()
	switch c {
	case 'x':
		v, n := 0, 0
		for {
			c, ok := l.peek()
			d, isHex := hexDigit(c)
			if !ok || !isHex {
				break
			}
			v = v<<4 | d
			n++
			if v > 0xff {
				return 0, l.errorf("hex escape out of range")
			}
			l.advance()
		}
		if n == 0 {
			return 0, l.errorf(`\x without hex digits`)
		}
		return byte(v), nil
	case '0', '1', '2', '3', '4', '5', '6', '7':
		v := int(c - '0')
		for i := 0; i < 2; i++ {
			c, ok := l.peek()
			if !ok || c < '0' || c > '7' {
				break
			}
			v = v<<3 | int(c-'0')
			l.advance()
		}
		if v > 0xff {
			return 0, l.errorf("octal escape out of range")
		}
		return byte(v), nil
	}
	switch c {
	case '\'', '"', '?', '\\':
		return c, nil
	case 'a':
		return 7, nil
	case 'b':
		return 8, nil
	case 'f':
		return 12, nil
	case 'n':
		return 10, nil
	case 'r':
		return 13, nil
	case 't':
		return 9, nil
	case 'v':
		return 11, nil
	}
	return 0, l.errorf("unknown escape \\%c (%#02x)", c, c)
}

func hexDigit(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}
