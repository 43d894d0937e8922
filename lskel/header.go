package lskel

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxHeaderSize bounds the C header accepted by ParseHeader. bpftool writes
// up to four characters per blob byte, so this leaves room for a blob of
// MaxDataSize plus the loader and signature.
const MaxHeaderSize = 96 << 20

// ParseHeader reads a bpftool-generated light-skeleton header (.lskel.h),
// signed or unsigned.
//
// A header is C: what it submits is what its NAME__load function hands
// bpf_load_and_run when compiled, not whatever arrays it declares. So
// ParseHeader accepts a header only when that function is, token for token,
// the one bpftool writes (bpftool src/gen.c, since v7.3.0; signed with -S
// since v7.7.0):
//
//	static inline int NAME__load(struct NAME *skel)
//	{
//		struct bpf_load_and_run_opts opts = {};
//		int err;
//		static const char opts_data[] __attribute__((__aligned__(8))) = "...";
//		static const char opts_insn[] __attribute__((__aligned__(8))) = "...";
//		static const char opts_sig[] __attribute__((__aligned__(8))) = "...";       (signed)
//		static const char opts_excl_hash[] __attribute__((__aligned__(8))) = "..."; (signed)
//		opts.signature = (void *)opts_sig;                                          (signed)
//		opts.signature_sz = sizeof(opts_sig) - 1;                                   (signed)
//		opts.excl_prog_hash = (void *)opts_excl_hash;                               (signed)
//		opts.excl_prog_hash_sz = sizeof(opts_excl_hash) - 1;                        (signed)
//		opts.keyring_id = skel->keyring_id;                                         (signed)
//		opts.ctx = (struct bpf_loader_ctx *)skel;
//		opts.data_sz = sizeof(opts_data) - 1;
//		opts.data = (void *)opts_data;
//		opts.insns_sz = sizeof(opts_insn) - 1;
//		opts.insns = (void *)opts_insn;
//		err = bpf_load_and_run(&opts);
//
// (the attribute may be left out), and nothing else in the header can
// change what those tokens mean or submit the arrays another way: the
// preprocessor directives are exactly bpftool's (the include guard
// __NAME_SKEL_H__, #include <bpf/skel_internal.h> and the two C++
// _Static_assert blocks, with no code before, after or inside them),
// there are no digraphs, trigraphs, _Pragma or backslashes outside
// literals, and opts, bpf_load_and_run and the opts_* arrays appear
// nowhere else. Anything else is an error that names the offending line. Comments, whitespace, line splices and
// the splitting of string literals may vary.
//
// The arrays are C string literals with C escapes; an array's value is the
// literal's bytes without the implicit trailing NUL, which is what
// `sizeof(NAME) - 1` passes. ParseHeader also reads each `data` array of
// __open() followed by `skel->MEMBER = ... skel_prep_map_data` (Globals)
// and the skeleton struct `struct NAME { struct bpf_loader_ctx ctx; ...`.
//
// The rest of the header (attach, detach, destroy, open) is not
// interpreted: it is C that can do more than bpftool's, and only a
// reviewed or regenerated header should be compiled; the bundle carries no
// code at all.
//
// The keyring id of a header artifact is 0: bpftool leaves it to the caller.
func ParseHeader(src []byte) (*Artifact, error) {
	if len(src) > MaxHeaderSize {
		return nil, &FormatError{Part: "header", Err: tooLarge(len(src), MaxHeaderSize)}
	}
	if err := checkTrigraphs(src); err != nil {
		return nil, err
	}
	p := &headerParser{lx: lexer{src: src, line: 1, nl: true}, seen: map[string]int{}}
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
// stream, checks the NAME__load function and the preprocessor directives
// against bpftool's, and skips everything else.
type headerParser struct {
	lx      lexer
	back    *token // one token of push-back
	la      *token // the lexer's token after a directive
	name    string
	arrays  map[string][]byte
	seen    map[string]int // array name -> line of its literal
	globals []GlobalData

	dirs      []directive // the preprocessor directives, in order
	code      int         // code tokens (not directives) read so far
	afterEnd  int         // line of the first code token after the last #endif, 0 if none
	inLoad    bool        // inside the generated statements of NAME__load
	loadFound bool        // NAME__load read in bpftool's form
}

// directive is one preprocessor directive: its tokens after the '#'.
type directive struct {
	line int
	toks []token
	code int // code tokens before it
}

// maxDirectiveTokens bounds one directive.
const maxDirectiveTokens = 64

// next returns the next code token (after the push-back). Directives are
// read and checked on the way, wherever they appear.
func (p *headerParser) next() (token, error) {
	if p.back != nil {
		t := *p.back
		p.back = nil
		return t, nil
	}
	for {
		var t token
		if p.la != nil {
			t, p.la = *p.la, nil
		} else {
			var err error
			if t, err = p.lx.next(); err != nil {
				return token{}, err
			}
		}
		if t.kind != tokPunct || t.text != "#" {
			if err := p.codeToken(t); err != nil {
				return token{}, err
			}
			return t, nil
		}
		d := directive{line: t.line, code: p.code}
		for {
			u, err := p.lx.next()
			if err != nil {
				return token{}, err
			}
			if u.bol || u.kind == tokEOF {
				p.la = &u
				break
			}
			if len(d.toks) == maxDirectiveTokens {
				return token{}, p.lineErr(d.line, "preprocessor", fmt.Errorf("%s: directive longer than %d tokens", p.quote(d.line), maxDirectiveTokens))
			}
			d.toks = append(d.toks, u)
		}
		if err := p.directive(d); err != nil {
			return token{}, err
		}
	}
}

// codeToken counts a code token and refuses the identifiers that only the
// generated statements of NAME__load may use.
func (p *headerParser) codeToken(t token) error {
	if t.kind == tokEOF {
		return nil
	}
	p.code++
	if len(p.dirs) == len(bpftoolDirectives) && p.afterEnd == 0 {
		p.afterEnd = t.line
	}
	if t.kind != tokWord {
		return nil
	}
	switch t.text {
	case "_Pragma":
		return p.lineErr(t.line, "preprocessor", fmt.Errorf("%s: _Pragma: bpftool writes none", p.quote(t.line)))
	case "opts", "bpf_load_and_run", "opts_data", "opts_insn", "opts_sig", "opts_excl_hash":
		if !p.inLoad {
			return p.lineErr(t.line, t.text, fmt.Errorf("%s: used outside the statements bpftool writes in %s__load", p.quote(t.line), p.nameOr("NAME")))
		}
	}
	return nil
}

func (p *headerParser) nameOr(s string) string {
	if p.name != "" {
		return p.name
	}
	return s
}

// bpftoolDirectives are the preprocessor directives of a bpftool light
// skeleton, in order, as tokens after the '#' (gen.c: the include guard,
// skel_internal.h, and in NAME__assert the C++ spelling of _Static_assert);
// the guard's name follows the first two. noCode marks those that must
// follow the previous one with no code in between.
var bpftoolDirectives = []struct {
	text   string
	noCode bool
}{
	{"ifndef ", true},
	{"define ", true},
	{"include < bpf / skel_internal . h >", true},
	{"ifdef __cplusplus", false},
	{"define _Static_assert static_assert", true},
	{"endif", true},
	{"ifdef __cplusplus", false},
	{"undef _Static_assert", true},
	{"endif", true},
	{"endif", false},
}

// directive checks d against the next directive bpftool writes.
func (p *headerParser) directive(d directive) error {
	k := len(p.dirs)
	if p.inLoad {
		return p.lineErr(d.line, "preprocessor", fmt.Errorf("%s: a directive among the statements bpftool writes in %s__load", p.quote(d.line), p.nameOr("NAME")))
	}
	if k == len(bpftoolDirectives) {
		return p.lineErr(d.line, "preprocessor", fmt.Errorf("%s: a directive after bpftool's last #endif", p.quote(d.line)))
	}
	var words []string
	for _, t := range d.toks {
		if t.kind != tokWord && t.kind != tokPunct && t.kind != tokNumber {
			words = append(words, "\x00") // a literal: never bpftool's
			continue
		}
		words = append(words, t.text)
	}
	got := strings.Join(words, " ")
	want := bpftoolDirectives[k]
	switch k {
	case 0:
		if len(words) != 2 || words[0] != "ifndef" || d.toks[1].kind != tokWord {
			return p.directiveErr(d, "#ifndef __NAME_SKEL_H__")
		}
	case 1:
		if got != "define "+p.dirs[0].toks[1].text {
			return p.directiveErr(d, "#define "+p.dirs[0].toks[1].text)
		}
	default:
		if got != want.text {
			return p.directiveErr(d, "#"+strings.ReplaceAll(strings.ReplaceAll(want.text, " . ", "."), " / ", "/"))
		}
	}
	if want.noCode && d.code != p.prevCode() {
		return p.lineErr(d.line, "preprocessor", fmt.Errorf("%s: bpftool writes no code before this directive", p.quote(d.line)))
	}
	p.dirs = append(p.dirs, d)
	return nil
}

func (p *headerParser) prevCode() int {
	if len(p.dirs) == 0 {
		return 0
	}
	return p.dirs[len(p.dirs)-1].code
}

func (p *headerParser) directiveErr(d directive, want string) error {
	return p.lineErr(d.line, "preprocessor", fmt.Errorf("%s: not bpftool's; the directive bpftool writes next is `%s`", p.quote(d.line), want))
}

// finish checks what can only be checked at the end of the header.
func (p *headerParser) finish() error {
	if p.name == "" {
		return &FormatError{Part: "header", Field: "skeleton struct", Err: errors.New("`struct NAME { struct bpf_loader_ctx ctx; ...` not found")}
	}
	if k := len(p.dirs); k < len(bpftoolDirectives) {
		want := strings.ReplaceAll(strings.ReplaceAll(bpftoolDirectives[k].text, " . ", "."), " / ", "/")
		if k < 2 {
			want += guardOf(p.name)
		}
		return &FormatError{Part: "header", Field: "preprocessor", Err: fmt.Errorf("bpftool's `#%s` (directive %d of %d) not found", want, k+1, len(bpftoolDirectives))}
	}
	if guard := p.dirs[0].toks[1].text; guard != guardOf(p.name) {
		return p.lineErr(p.dirs[0].line, "preprocessor", fmt.Errorf("%s: bpftool's include guard for %s is %s", p.quote(p.dirs[0].line), p.name, guardOf(p.name)))
	}
	if p.afterEnd != 0 {
		return p.lineErr(p.afterEnd, "preprocessor", fmt.Errorf("%s: code after bpftool's last #endif", p.quote(p.afterEnd)))
	}
	if !p.loadFound {
		return &FormatError{Part: "header", Field: p.name + "__load", Err: fmt.Errorf("`static inline int %[1]s__load(struct %[1]s *skel)` not found", p.name)}
	}
	return nil
}

// guardOf is bpftool's include guard for a skeleton (gen.c get_header_guard).
func guardOf(name string) string { return "__" + strings.ToUpper(name) + "_SKEL_H__" }

// lineErr is a header error at a line.
func (p *headerParser) lineErr(line int, field string, err error) error {
	return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", line), Field: field, Err: err}
}

// maxQuote bounds the part of a source line an error quotes.
const maxQuote = 100

// quote returns source line n, trimmed and shortened, in backquotes.
func (p *headerParser) quote(n int) string { return quoteLine(p.lx.src, n) }

// quoteLine returns line n of src (lines end at '\n', as the lexer counts
// them), trimmed and shortened, in backquotes.
func quoteLine(src []byte, n int) string {
	for i := 1; i < n && src != nil; i++ {
		j := bytes.IndexByte(src, '\n')
		if j < 0 {
			src = nil
			break
		}
		src = src[j+1:]
	}
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	s := strings.TrimSpace(string(src))
	if len(s) > maxQuote {
		s = s[:maxQuote] + "..."
	}
	return "`" + s + "`"
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
			return p.finish()
		case t.isWord("static"):
			if ok, err := p.function(); err != nil {
				return err
			} else if !ok {
				if err := p.array(); err != nil {
					return err
				}
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
// after `static`. Only the `data` arrays of __open() are read here; the
// opts_* arrays belong to NAME__load (loadFunction).
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
	value, line, err := p.literals(name)
	if err != nil || line == 0 || name != "data" {
		return err // line 0: not initialised from a string literal, not ours
	}
	member, err := p.globalMember(line)
	if err != nil {
		return err
	}
	if len(p.globals) >= MaxGlobals {
		return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", line), Field: "data", Err: fmt.Errorf("more than %d arrays: %w", MaxGlobals, ErrTooLarge)}
	}
	p.globals = append(p.globals, GlobalData{Name: member, Data: value})
	return nil
}

// literals reads adjacent string literals and the `;` after them, and
// returns their concatenated bytes (never nil) and the line of the first;
// line 0 when no literal follows.
func (p *headerParser) literals(name string) ([]byte, int, error) {
	value, line := []byte{}, 0
	for {
		t, err := p.next()
		if err != nil {
			return nil, 0, err
		}
		if t.kind != tokString {
			p.unread(t)
			break
		}
		if line == 0 {
			// The first literal's bytes are the value's until a second
			// one follows (each token's are its own).
			line, value = t.line, t.str
			continue
		}
		value = append(value, t.str...)
	}
	if line == 0 {
		return nil, 0, nil
	}
	if ok, err := p.expect(";"); err != nil {
		return nil, 0, err
	} else if !ok {
		return nil, 0, &FormatError{Part: "header", Where: fmt.Sprintf("line %d", p.lx.line), Field: name, Err: errors.New("string literal not followed by ';'")}
	}
	return value, line, nil
}

// function reads what follows `static` when it starts a function
// definition (`static inline`) and reports true; NAME__load is checked
// against bpftool's form, other functions are left to the main loop. It
// reports false when `static` starts something else.
func (p *headerParser) function() (bool, error) {
	if ok, err := p.expect("inline"); !ok || err != nil {
		return false, err
	}
	if ok, err := p.expect("int"); !ok || err != nil {
		return true, err
	}
	w, err := p.next()
	if err != nil {
		return true, err
	}
	if w.kind != tokWord || !strings.HasSuffix(w.text, "__load") {
		p.unread(w)
		return true, nil
	}
	switch {
	case p.name == "":
		return true, p.lineErr(w.line, "skeleton struct", fmt.Errorf("`struct NAME { struct bpf_loader_ctx ctx; ...` not found before %s", w.text))
	case w.text != p.name+"__load":
		return true, nil
	case p.loadFound:
		return true, p.lineErr(w.line, w.text, errors.New("defined twice"))
	}
	return true, p.loadFunction()
}

// The statements of NAME__load that bpftool writes (gen.c gen_trace),
// before, between and after the arrays.
var (
	loadHead   = []string{"struct bpf_load_and_run_opts opts = {};", "int err;"}
	loadSigned = []string{
		"opts.signature = (void *)opts_sig;",
		"opts.signature_sz = sizeof(opts_sig) - 1;",
		"opts.excl_prog_hash = (void *)opts_excl_hash;",
		"opts.excl_prog_hash_sz = sizeof(opts_excl_hash) - 1;",
		"opts.keyring_id = skel->keyring_id;",
	}
	loadTail = []string{
		"opts.ctx = (struct bpf_loader_ctx *)skel;",
		"opts.data_sz = sizeof(opts_data) - 1;",
		"opts.data = (void *)opts_data;",
		"opts.insns_sz = sizeof(opts_insn) - 1;",
		"opts.insns = (void *)opts_insn;",
		"err = bpf_load_and_run(&opts);",
	}
)

// loadFunction checks NAME__load, after its name, token for token against
// bpftool's, up to and including the bpf_load_and_run call, and reads its
// arrays. What follows the call cannot change what the call submitted.
func (p *headerParser) loadFunction() error {
	if err := p.statement(fmt.Sprintf("(struct %s *skel) {", p.name)); err != nil {
		return err
	}
	p.inLoad = true
	for _, s := range loadHead {
		if err := p.statement(s); err != nil {
			return err
		}
	}
	for _, name := range []string{"opts_data", "opts_insn"} {
		if err := p.loadArray(name); err != nil {
			return err
		}
	}
	t, err := p.next()
	if err != nil {
		return err
	}
	p.unread(t)
	tail := loadTail
	if t.isWord("static") {
		for _, name := range []string{"opts_sig", "opts_excl_hash"} {
			if err := p.loadArray(name); err != nil {
				return err
			}
		}
		tail = append(append([]string{}, loadSigned...), loadTail...)
	}
	for _, s := range tail {
		if err := p.statement(s); err != nil {
			return err
		}
	}
	p.inLoad, p.loadFound = false, true
	return nil
}

// loadArray reads one array of NAME__load: `static const char NAME[]
// __attribute__((__aligned__(8))) = "...";`, the attribute optional.
func (p *headerParser) loadArray(name string) error {
	decl := "static const char " + name + "[]"
	if err := p.statement(decl); err != nil {
		return err
	}
	t, err := p.next()
	if err != nil {
		return err
	}
	p.unread(t)
	if t.isWord("__attribute__") {
		if err := p.statement("__attribute__((__aligned__(8)))"); err != nil {
			return err
		}
	}
	if err := p.statement("="); err != nil {
		return err
	}
	value, line, err := p.literals(name)
	if err != nil {
		return err
	}
	if line == 0 {
		t, err := p.next()
		if err != nil {
			return err
		}
		return p.formErr(t, decl+` __attribute__((__aligned__(8))) = "...";`)
	}
	p.seen[name] = line
	p.arrays[name] = value
	return nil
}

// statement reads the tokens of want, C source bpftool writes, and fails
// on the first token that differs.
func (p *headerParser) statement(want string) error {
	for rest := want; ; {
		var kind tokKind
		var text string
		if kind, text, rest = nextCToken(rest); kind == tokEOF {
			return nil
		}
		t, err := p.next()
		if err != nil {
			return err
		}
		if t.kind != kind || t.text != text {
			return p.formErr(t, want)
		}
	}
}

// nextCToken returns the first token of src, C source bpftool writes
// (words, numbers and punctuation, no literals, comments or splices), as
// the lexer reads it, and what follows it; tokEOF at the end.
func nextCToken(src string) (tokKind, string, string) {
	src = strings.TrimLeft(src, " \t\n")
	switch {
	case src == "":
		return tokEOF, "", ""
	case isIdentByte(src[0]):
		n := 1
		for n < len(src) && isIdentByte(src[n]) {
			n++
		}
		kind := tokWord
		if src[0] >= '0' && src[0] <= '9' {
			kind = tokNumber
		}
		return kind, src[:n], src[n:]
	case strings.HasPrefix(src, "->"):
		return tokPunct, "->", src[2:]
	}
	return tokPunct, src[:1], src[1:]
}

// formErr reports a token of NAME__load that is not bpftool's.
func (p *headerParser) formErr(t token, want string) error {
	field := p.name + "__load"
	if t.kind == tokEOF {
		return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", t.line), Field: field, Err: fmt.Errorf("ends where bpftool writes `%s`", want)}
	}
	return p.lineErr(t.line, field, fmt.Errorf("%s: not bpftool's form; bpftool writes `%s` here", p.quote(t.line), want))
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
	bol  bool // first token of a line (after translation phases 2 and 3)
}

func (t token) isWord(w string) bool { return t.kind == tokWord && t.text == w }

// checkTrigraphs refuses trigraphs (C11 5.1.1.2 phase 1): a compiler that
// honours them reads ??= as '#' and ??/ as a backslash, in literals and
// comments too. bpftool writes none.
func checkTrigraphs(src []byte) error {
	for i := 0; ; {
		j := bytes.Index(src[i:], []byte("??"))
		if j < 0 || i+j+2 >= len(src) {
			return nil
		}
		i += j
		if strings.IndexByte("=/'()!<>-", src[i+2]) >= 0 {
			line := 1 + bytes.Count(src[:i], []byte{'\n'})
			return &FormatError{Part: "header", Where: fmt.Sprintf("line %d", line), Err: fmt.Errorf("%s: trigraph ??%c: bpftool writes none", quoteLine(src, line), src[i+2])}
		}
		i++
	}
}

// lexer splits C source into tokens. It applies translation phase 2 (a
// backslash-newline splice disappears wherever it occurs), skips comments
// and whitespace, and decodes string literals (C11 6.4.4.4, 6.4.5).
type lexer struct {
	src  []byte
	pos  int
	line int
	nl   bool // a newline outside comments since the last token
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
	bol := l.nl
	l.nl = false
	if !ok {
		return token{kind: tokEOF, line: l.line, bol: true}, nil
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
		return token{kind: kind, str: s, line: line, bol: bol}, nil
	case isIdentByte(c):
		// An identifier or number: one slice of the source, unless a
		// line splice runs through it.
		start, i := l.pos, l.pos
		for i < len(l.src) && isIdentByte(l.src[i]) {
			i++
		}
		if i == len(l.src) || l.src[i] != '\\' {
			l.pos = i
			kind := tokWord
			if c >= '0' && c <= '9' {
				kind = tokNumber
			}
			return token{kind: kind, text: string(l.src[start:i]), line: line, bol: bol}, nil
		}
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
			// Digraphs (C11 6.4.6): %: is a '#' that starts a directive.
			return token{}, l.errorf("%s: digraph %c%c: bpftool writes none", quoteLine(l.src, line), c, c2)
		case c == '\\':
			// Outside a literal only a universal character name (\u,
			// \U) can start with one: an identifier bpftool never writes.
			return token{}, l.errorf("%s: backslash outside a literal: bpftool writes none", quoteLine(l.src, line))
		}
		return token{kind: tokPunct, text: string(rune(c)), line: line, bol: bol}, nil
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
			if c == '\n' {
				l.nl = true // a newline inside a block comment is not one (C11 5.1.1.2 phase 3)
			}
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
// Runs of plain bytes and of the escapes bpftool writes (\xNN, \0, line
// splices) are decoded in bulk by literalRun; anything else, one step at
// a time, by the general code below, which the bulk decoder must agree
// with byte for byte (FuzzLiteral and FuzzLexer hold it to the
// byte-at-a-time reference kept in the tests).
func (l *lexer) literal(quote byte) ([]byte, error) {
	// The decoded bytes are at most the source bytes up to the next
	// quote character, unless an escaped quote comes first: one
	// allocation in bpftool's case.
	size := bytes.IndexByte(l.src[l.pos:], quote)
	if size < 0 {
		size = len(l.src) - l.pos
	}
	out := make([]byte, 0, size)
	for {
		var done bool
		if out, done = l.literalRun(out, quote); done {
			return out, nil
		}
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

// literalRun decodes from l.pos for as long as the input is plain bytes,
// line splices and the escapes bpftool writes: \xHH not followed by a
// hex digit, \0 not followed by an octal digit (either after any
// splices), and the one-letter escapes.
// It reports done when it consumed the closing quote; otherwise l.pos is
// where the general decoder takes over for one step (a newline, an
// escape it leaves to it, the end of the input).
func (l *lexer) literalRun(out []byte, quote byte) ([]byte, bool) {
	src, i := l.src, l.pos
	// The decoded bytes are written at dst[w], dst growing when full.
	dst, w := out[:cap(out)], len(out)
	room := func(n int) {
		if w+n > len(dst) {
			dst = slices.Grow(dst[:w], n)
			dst = dst[:cap(dst)]
		}
	}
	// splice reports whether a line splice starts at j (\ then LF or
	// CRLF); past returns where the splices from j end.
	splice := func(j int) bool {
		return j+1 < len(src) && src[j] == '\\' && (src[j+1] == '\n' || src[j+1] == '\r' && j+2 < len(src) && src[j+2] == '\n')
	}
	past := func(j int) int {
		for splice(j) {
			if src[j+1] == '\n' {
				j += 2
			} else {
				j += 3
			}
		}
		return j
	}
	// digitAt reports whether, past any splices, j holds a byte that
	// continues an escape: a hex digit, or an octal one.
	digitAt := func(j int, hex bool) bool {
		if j = past(j); j >= len(src) {
			return false
		}
		if hex {
			return hexValue[src[j]] <= 0xf
		}
		return src[j] >= '0' && src[j] <= '7'
	}
	for i < len(src) {
		c := src[i]
		if c != '\\' {
			if c == quote {
				l.pos = i + 1
				return dst[:w], true
			}
			if c == '\n' {
				break
			}
			// A run of plain bytes, copied at once.
			j := i + 1
			for j < len(src) && src[j] != '\\' && src[j] != quote && src[j] != '\n' {
				j++
			}
			room(j - i)
			w += copy(dst[w:], src[i:j])
			i = j
			continue
		}
		if i+5 > len(src) {
			break
		}
		e := src[i : i+5 : i+5] // the backslash and what an escape can read
		switch {
		case e[1] == 'x':
			// Two hex digits, then neither a third nor a splice.
			h, lo, more := hexValue[e[2]], hexValue[e[3]], hexValue[e[4]]
			if h|lo > 0xf || more <= 0xf || e[4] == '\\' && digitAt(i+4, true) {
				break
			}
			room(1)
			dst[w] = h<<4 | lo
			w++
			i += 4
			continue
		case e[1] == '0':
			if n := e[2]; n >= '0' && n <= '7' || n == '\\' && digitAt(i+2, false) {
				break
			}
			room(1)
			dst[w] = 0
			w++
			i += 2
			continue
		case e[1] == '\n':
			i += 2
			l.line++
			continue
		case e[1] == '\r' && e[2] == '\n':
			i += 3
			l.line++
			continue
		default:
			// A backslash escape whose second backslash starts a splice
			// is not one: the splice goes first.
			if b, ok := simpleEscape(e[1]); ok && !(e[1] == '\\' && splice(i+1)) {
				room(1)
				dst[w] = b
				w++
				i += 2
				continue
			}
		}
		break
	}
	l.pos = i
	return dst[:w], false
}

// hexValue maps a hex digit to its value and any other byte to 0xff.
var hexValue = func() (t [256]byte) {
	for c := range t {
		v, ok := hexDigit(byte(c))
		t[c] = 0xff
		if ok {
			t[c] = byte(v)
		}
	}
	return t
}()

// simpleEscape maps the character of a one-letter escape (C11 6.4.4.4)
// to its byte.
func simpleEscape(c byte) (byte, bool) {
	switch c {
	case '\'', '"', '?', '\\':
		return c, true
	case 'a':
		return 7, true
	case 'b':
		return 8, true
	case 'f':
		return 12, true
	case 'n':
		return 10, true
	case 'r':
		return 13, true
	case 't':
		return 9, true
	case 'v':
		return 11, true
	}
	return 0, false
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
	if b, ok := simpleEscape(c); ok {
		return b, nil
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
