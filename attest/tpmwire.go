package attest

import (
	"crypto"
	"encoding/binary"
	"fmt"

	"github.com/bpfattest/bpfattest/cel"
)

// This file reads the two TPM structures a quote travels in, from their
// big-endian wire form (TPM 2.0 Library Part 2): TPMS_ATTEST of type
// TPM_ST_ATTEST_QUOTE (§10.12.12, with TPMS_QUOTE_INFO §10.12.4 and
// TPMS_CLOCK_INFO §10.11.1) and TPMT_SIGNATURE (§11.3.4). Both readers are
// strict: every length is bounds-checked, trailing bytes are an error, and
// an error names the field and its byte offset.

// Constants from TPM 2.0 Library Part 2.
const (
	tpmGeneratedValue = 0xff544347 // TPM_GENERATED_VALUE, §6.2
	tpmSTAttestQuote  = 0x8018     // TPM_ST_ATTEST_QUOTE, §6.9
	tpmAlgRSASSA      = 0x0014     // TPM_ALG_RSASSA, §6.3
	tpmAlgECDSA       = 0x0018     // TPM_ALG_ECDSA
	pcrSelectMax      = 4          // PCR_SELECT_MAX for 32 PCRs (PC Client: 3)
	maxSelections     = 16         // HASH_COUNT bound for TPML_PCR_SELECTION
)

// wireReader reads TPM structures and remembers the first error.
type wireReader struct {
	b   []byte
	pos int
	err error
	// list and item name the element of a list being read: an error's
	// field is then "list[item] field". The name is only formatted for
	// an error.
	list string
	item int
}

func (r *wireReader) failf(field string, off int, format string, args ...any) {
	if r.err != nil {
		return
	}
	if r.list != "" {
		field = fmt.Sprintf("%s[%d] %s", r.list, r.item, field)
	}
	r.err = fmt.Errorf("%s at offset %d: %s", field, off, fmt.Sprintf(format, args...))
}

func (r *wireReader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.pos < n {
		r.failf(field, r.pos, "needs %d bytes, %d left", n, len(r.b)-r.pos)
		return nil
	}
	v := r.b[r.pos : r.pos+n]
	r.pos += n
	return v
}

func (r *wireReader) u8(field string) uint8 {
	if v := r.take(field, 1); v != nil {
		return v[0]
	}
	return 0
}

func (r *wireReader) u16(field string) uint16 {
	if v := r.take(field, 2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *wireReader) u32(field string) uint32 {
	if v := r.take(field, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *wireReader) u64(field string) uint64 {
	if v := r.take(field, 8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// tpm2b reads a TPM2B: a u16 size and that many bytes, at most limit.
func (r *wireReader) tpm2b(field string, limit int) []byte {
	start := r.pos
	n := int(r.u16(field + " size"))
	if r.err == nil && n > limit {
		r.failf(field, start, "size %d, limit %d", n, limit)
		return nil
	}
	return r.take(field, n)
}

func (r *wireReader) done(what string) error {
	if r.err == nil && r.pos != len(r.b) {
		r.failf(what, r.pos, "%d trailing bytes", len(r.b)-r.pos)
	}
	if r.err != nil {
		return fmt.Errorf("%s: %w", what, r.err)
	}
	return nil
}

// pcrSel is one bank of a quote's PCR selection.
type pcrSel struct {
	bank crypto.Hash
	pcrs []int // ascending
}

// quoteInfo is a parsed TPMS_ATTEST of type quote.
type quoteInfo struct {
	extraData       []byte
	clock           cel.ClockInfo
	firmwareVersion uint64
	selection       []pcrSel
	pcrDigest       []byte
}

// parseQuote reads a TPMS_ATTEST that must be a quote.
func parseQuote(b []byte) (*quoteInfo, error) {
	r := wireReader{b: b}
	q := &quoteInfo{}
	if m := r.u32("magic"); r.err == nil && m != tpmGeneratedValue {
		r.failf("magic", 0, "%#08x, want TPM_GENERATED_VALUE", m)
	}
	if t := r.u16("type"); r.err == nil && t != tpmSTAttestQuote {
		r.failf("type", 4, "%#04x, want TPM_ST_ATTEST_QUOTE", t)
	}
	r.tpm2b("qualifiedSigner", 2+64)
	q.extraData = r.tpm2b("extraData", 64+2)
	q.clock.Clock = r.u64("clock")
	q.clock.ResetCount = r.u32("resetCount")
	q.clock.RestartCount = r.u32("restartCount")
	safeOff := r.pos
	switch s := r.u8("safe"); {
	case r.err != nil:
	case s > 1:
		r.failf("safe", safeOff, "value %d, want 0 or 1", s)
	default:
		q.clock.Safe = s == 1
	}
	q.firmwareVersion = r.u64("firmwareVersion")
	q.selection = r.pcrSelection()
	q.pcrDigest = r.tpm2b("pcrDigest", 64)
	if err := r.done("tpms_attest"); err != nil {
		return nil, err
	}
	return q, nil
}

// pcrSelection reads a TPML_PCR_SELECTION (Part 2 §10.9.7).
func (r *wireReader) pcrSelection() []pcrSel {
	start := r.pos
	n := r.u32("pcrSelect count")
	if r.err == nil && n > maxSelections {
		r.failf("pcrSelect count", start, "%d selections, limit %d", n, maxSelections)
	}
	if r.err != nil {
		return nil
	}
	out := make([]pcrSel, 0, n)
	r.list = "pcrSelect"
	defer func() { r.list = "" }()
	for i := range int(n) {
		r.item = i
		algOff := r.pos
		alg := r.u16("hash")
		sizeOff := r.pos
		size := int(r.u8("sizeofSelect"))
		if r.err == nil && size > pcrSelectMax {
			r.failf("sizeofSelect", sizeOff, "%d, limit %d", size, pcrSelectMax)
		}
		bits := r.take("pcrSelect", size)
		if r.err != nil {
			return nil
		}
		h, ok := cel.HashForAlg(alg)
		if !ok {
			r.failf("hash", algOff, "unsupported bank %#04x", alg)
			return nil
		}
		s := pcrSel{bank: h}
		for j, byt := range bits {
			for k := range 8 {
				if byt&(1<<k) != 0 {
					s.pcrs = append(s.pcrs, j*8+k)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// signature is a parsed TPMT_SIGNATURE.
type signature struct {
	alg  uint16 // tpmAlgRSASSA or tpmAlgECDSA
	hash crypto.Hash
	rsa  []byte // RSASSA
	r, s []byte // ECDSA
}

// parseSignature reads a TPMT_SIGNATURE with an RSASSA or ECDSA signature.
func parseSignature(b []byte) (*signature, error) {
	r := wireReader{b: b}
	sig := &signature{}
	sig.alg = r.u16("sigAlg")
	if r.err == nil && sig.alg != tpmAlgRSASSA && sig.alg != tpmAlgECDSA {
		r.failf("sigAlg", 0, "%#04x, want RSASSA or ECDSA", sig.alg)
	}
	hashAlg := r.u16("hash")
	if r.err == nil {
		h, ok := signatureHash(hashAlg)
		if !ok {
			r.failf("hash", 2, "%#04x, want SHA-256, SHA-384 or SHA-512", hashAlg)
		}
		sig.hash = h
	}
	if sig.alg == tpmAlgRSASSA {
		sig.rsa = r.tpm2b("sig", 512)
	} else {
		sig.r = r.tpm2b("signatureR", 66)
		sig.s = r.tpm2b("signatureS", 66)
	}
	if err := r.done("tpmt_signature"); err != nil {
		return nil, err
	}
	return sig, nil
}

// signatureHash maps a TPM_ALG_ID to a hash acceptable for a quote
// signature: SHA-1 is not.
func signatureHash(alg uint16) (crypto.Hash, bool) {
	h, ok := cel.HashForAlg(alg)
	if !ok || h == crypto.SHA1 {
		return 0, false
	}
	return h, true
}
