package lskel

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Format names the container an Artifact was read from.
type Format uint8

const (
	// FormatUnknown is the zero value; no parser returns it.
	FormatUnknown Format = iota
	// FormatHeader is a bpftool-generated light-skeleton C header (.lskel.h).
	FormatHeader
	// FormatBundle is this project's binary bundle (docs/bundle-format.md).
	FormatBundle
)

func (f Format) String() string {
	switch f {
	case FormatHeader:
		return "header"
	case FormatBundle:
		return "bundle"
	default:
		return fmt.Sprintf("Format(%d)", uint8(f))
	}
}

// Size limits shared by every reader and by MarshalBundle. An artifact that
// breaks one is refused before anything else looks at it.
const (
	MaxInsnsSize     = 1 << 20  // opts_insn, bytes
	MaxDataSize      = 16 << 20 // opts_data, bytes
	MaxSignatureSize = 8192     // opts_sig, bytes: the kernel refuses larger signatures with EINVAL
	ExclHashSize     = 32       // opts_excl_hash: a SHA-256
	MaxNameSize      = 128      // skeleton name, bytes
	MaxCerts         = 8        // signer certificates per bundle
	MaxCertSize      = 16 << 10 // one DER certificate, bytes
	MaxGlobals       = 64       // global-data arrays per artifact
	MaxGlobalsSize   = 16 << 20 // all global-data arrays together, bytes
	MaxExtensions    = 16       // unknown non-critical bundle records kept
	MaxExtensionSize = 64 << 10 // one unknown non-critical bundle record, bytes
)

// Artifact is one light skeleton as the agent receives it.
//
// The byte slices may alias the input passed to the parser; callers that
// modify the input afterwards must copy first.
type Artifact struct {
	Name      string       // skeleton name, e.g. "counter_lskel"
	Insns     []byte       // opts_insn: the loader program
	Data      []byte       // opts_data: the loader's data blob (the frozen map value)
	Signature []byte       // opts_sig, nil when unsigned
	ExclHash  []byte       // opts_excl_hash (32 bytes), nil when unsigned
	KeyringID int32        // keyring hint (bundle field; headers: 0, the skeleton default)
	Certs     [][]byte     // optional DER signer certificates (bundle only)
	Globals   []GlobalData // initial values of mmapable global-data maps, for information
	Source    Format       // FormatHeader or FormatBundle

	// Extensions holds bundle records of types this version does not know
	// and that are marked non-critical, in file order, so that a bundle
	// round-trips byte for byte. They are never interpreted.
	Extensions []Extension
}

// GlobalData is the initial value of one mmapable global-data map as a
// header carries it (the `data` array in __open()). It is informational: the
// loader takes the initial value from the data blob, not from here.
type GlobalData struct {
	Name string // skeleton member, e.g. "bss", "rodata"
	Data []byte
}

// Extension is an unknown, non-critical bundle record kept verbatim.
type Extension struct {
	Type  uint16
	Value []byte
}

// Signed reports whether the artifact carries a signature.
func (a *Artifact) Signed() bool { return a.Signature != nil }

// Load reads an artifact in either supported format: a bundle when src
// starts with the bundle magic, a bpftool C header otherwise.
func Load(src []byte) (*Artifact, error) {
	if len(src) == 0 {
		return nil, fmt.Errorf("artifact: empty input: %w", ErrUnknownFormat)
	}
	if bytes.HasPrefix(src, bundleMagic[:]) {
		return ParseBundle(src)
	}
	if src[0] == bundleMagic[0] {
		return nil, fmt.Errorf("artifact: bad bundle magic: %w", ErrUnknownFormat)
	}
	return ParseHeader(src)
}

// validate checks the limits and cross-field rules every artifact obeys,
// whatever format it came from.
func (a *Artifact) validate() error {
	if err := validName(a.Name); err != nil {
		return fieldErr("name", err)
	}
	switch {
	case len(a.Insns) == 0:
		return fieldErr("insns", errors.New("missing or empty"))
	case len(a.Insns) > MaxInsnsSize:
		return fieldErr("insns", tooLarge(len(a.Insns), MaxInsnsSize))
	case len(a.Insns)%insnSize != 0:
		return fieldErr("insns", fmt.Errorf("length %d is not a multiple of %d", len(a.Insns), insnSize))
	}
	switch {
	case len(a.Data) == 0:
		return fieldErr("data", errors.New("missing or empty"))
	case len(a.Data) > MaxDataSize:
		return fieldErr("data", tooLarge(len(a.Data), MaxDataSize))
	}
	if a.Signature != nil {
		switch {
		case len(a.Signature) == 0:
			return fieldErr("signature", errors.New("empty"))
		case len(a.Signature) > MaxSignatureSize:
			return fieldErr("signature", tooLarge(len(a.Signature), MaxSignatureSize))
		case a.ExclHash == nil:
			return fieldErr("excl_hash", errors.New("missing for a signed artifact"))
		}
	}
	if a.ExclHash != nil && len(a.ExclHash) != ExclHashSize {
		return fieldErr("excl_hash", fmt.Errorf("length %d, want %d", len(a.ExclHash), ExclHashSize))
	}
	if len(a.Certs) > MaxCerts {
		return fieldErr("certs", fmt.Errorf("%d certificates: %w", len(a.Certs), ErrTooLarge))
	}
	for i, c := range a.Certs {
		if err := checkDERCert(c); err != nil {
			return fieldErr(fmt.Sprintf("certs[%d]", i), err)
		}
	}
	return a.validateGlobals()
}

func (a *Artifact) validateGlobals() error {
	if len(a.Globals) > MaxGlobals {
		return fieldErr("globals", fmt.Errorf("%d arrays: %w", len(a.Globals), ErrTooLarge))
	}
	total := 0
	seen := make(map[string]bool, len(a.Globals))
	for i, g := range a.Globals {
		field := fmt.Sprintf("globals[%d]", i)
		if !isIdent(g.Name) || len(g.Name) > MaxNameSize {
			return fieldErr(field, fmt.Errorf("name %q is not a C identifier of at most %d bytes", g.Name, MaxNameSize))
		}
		if seen[g.Name] {
			return fieldErr(field, fmt.Errorf("duplicate name %q", g.Name))
		}
		seen[g.Name] = true
		total += len(g.Data)
		if total > MaxGlobalsSize {
			return fieldErr(field, tooLarge(total, MaxGlobalsSize))
		}
	}
	return nil
}

// validName accepts 1..MaxNameSize bytes of [A-Za-z0-9_.-].
func validName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > MaxNameSize {
		return tooLarge(len(s), MaxNameSize)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isIdentByte(c) && c != '.' && c != '-' {
			return fmt.Errorf("byte %d (%#02x) not in [A-Za-z0-9_.-]", i, c)
		}
	}
	return nil
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isIdent(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return r > 0x7f || !isIdentByte(byte(r)) }) < 0
}

// checkDERCert checks the outer shape of a DER certificate: one definite-
// length SEQUENCE that spans the whole value. The certificate itself is
// parsed by whoever verifies the signature.
func checkDERCert(c []byte) error {
	switch {
	case len(c) == 0:
		return errors.New("empty")
	case len(c) > MaxCertSize:
		return tooLarge(len(c), MaxCertSize)
	case len(c) < 2 || c[0] != 0x30:
		return errors.New("not a DER SEQUENCE")
	}
	n, hdr := int(c[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(c) < 2+k {
			return errors.New("bad DER length")
		}
		n = 0
		for _, b := range c[2 : 2+k] {
			n = n<<8 | int(b)
		}
		hdr += k
		if n < 0x80 || n>>(8*(k-1)) == 0 {
			return errors.New("non-minimal DER length")
		}
	}
	if hdr+n != len(c) {
		return fmt.Errorf("DER length %d does not span the %d-byte value", hdr+n, len(c))
	}
	return nil
}

func tooLarge(n, limit int) error {
	return fmt.Errorf("size %d exceeds limit %d: %w", n, limit, ErrTooLarge)
}

// Sentinel errors. Every parse and analysis failure also matches
// ErrMalformed through FormatError.
var (
	// ErrMalformed: the input is not a well-formed artifact, loader or blob.
	ErrMalformed = errors.New("malformed input")
	// ErrTooLarge: a size or count limit was exceeded.
	ErrTooLarge = errors.New("over limit")
	// ErrUnknownFormat: Load recognised neither a bundle nor a C header.
	ErrUnknownFormat = errors.New("unknown artifact format")
	// ErrUnsupportedLoader: the loader does something the analyser cannot
	// follow (e.g. a bpf() call whose arguments are not constants).
	ErrUnsupportedLoader = errors.New("unsupported loader shape")
)

// FormatError says what is wrong with an input and where.
type FormatError struct {
	Part  string // "artifact", "header", "bundle", "loader", "blob" or "elf"
	Where string // position, e.g. "line 94", "offset 1234", "insn 12"; may be empty
	Field string // the field or array concerned; may be empty
	Err   error
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString(e.Part)
	for _, s := range []string{e.Where, e.Field} {
		if s != "" {
			b.WriteString(": ")
			b.WriteString(s)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

// Is makes every FormatError match ErrMalformed.
func (e *FormatError) Is(target error) bool { return target == ErrMalformed }

func fieldErr(field string, err error) error {
	return &FormatError{Part: "artifact", Field: field, Err: err}
}
