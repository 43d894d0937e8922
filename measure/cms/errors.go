package cms

import (
	"errors"
	"fmt"
)

// The classes of a *ParseError, which callers branch on with errors.Is.
var (
	// ErrMalformed: the bytes are not a SignedData the kernel's decoder
	// accepts.
	ErrMalformed = errors.New("malformed cms")
	// ErrUnsupported: a well-formed field names something the kernel (or
	// this package, see docs/cms-verification.md) does not implement, such
	// as an unknown digest or signature algorithm.
	ErrUnsupported = errors.New("unsupported cms feature")
	// ErrRejected: the kernel parser refuses the message by rule
	// (EKEYREJECTED at parse time: smimeCapabilities, repeated attributes).
	ErrRejected = errors.New("cms rejected by rule")
)

// ParseError says where in the signature a problem was found and which
// errno the kernel would return for it.
type ParseError struct {
	Offset int    // byte offset into the signature
	Field  string // the ASN.1 field being read, e.g. "SignerInfo.version"
	Errno  string // the kernel errno name, e.g. "EBADMSG"
	Msg    string // what is wrong
	Err    error  // ErrMalformed, ErrUnsupported or ErrRejected
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("cms/parse: %s at offset %d: %s (%s)", e.Field, e.Offset, e.Msg, e.Errno)
}

// Unwrap returns the sentinel class of the error.
func (e *ParseError) Unwrap() error { return e.Err }

func newParseError(off int, field, errno string, class error, format string, args ...any) *ParseError {
	return &ParseError{Offset: off, Field: field, Errno: errno, Msg: fmt.Sprintf(format, args...), Err: class}
}

// ErrTooLarge: the signature exceeds MaxSignatureSize.
var ErrTooLarge = errors.New("signature too large")

// ErrUnknownVerdict: text or a number that is not a Verdict.
var ErrUnknownVerdict = errors.New("unknown verdict")

// ErrSign: Sign was given options or keys it cannot use.
var ErrSign = errors.New("cannot sign")
