package tpm

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// maxQualifyingData is the largest TPM2B_DATA: sizeof(TPMT_HA) with a
// SHA-512 digest (TPM 2.0 Part 2 §10.4.3). TPMs without SHA-512 accept less.
const maxQualifyingData = 66

// Quote is a TPM2_Quote and what a verifier needs beside it.
type Quote struct {
	// Attest is the TPMS_ATTEST the AK signed, without a TPM2B size prefix
	// (the form tpm2_checkquote -m takes).
	Attest []byte
	// Signature is the TPMT_SIGNATURE over Attest.
	Signature []byte
	// PCRs are the quoted PCR values, read under the same lock as the quote
	// and checked against its PCR digest, in the order the digest covers
	// them: banks in ascending TPM algorithm id, then ascending index.
	PCRs []PCRValue
	// Clock is the clock information inside Attest.
	Clock ClockInfo
}

// Quote signs the PCRs pcrs of the banks banks with the AK, binding
// qualifyingData (the verifier's nonce, or a digest over it; 1 to 66 bytes,
// 32 recommended). It loads the AK, reads the PCRs, quotes, and flushes the
// AK, all under the Device's lock, so no Extend through this Device can
// fall between the read and the quote. If another TPM client changes the
// PCRs in between (the quote's PCR digest does not match the values read),
// it tries again, and after a few attempts returns ErrPCRChanged.
func (d *Device) Quote(ak *AK, qualifyingData []byte, pcrs []int, banks []crypto.Hash) (*Quote, error) {
	if ak == nil {
		return nil, fmt.Errorf("tpm/quote: %w: nil AK", ErrBadQuoteRequest)
	}
	want, err := d.quoteSelection(qualifyingData, pcrs, banks)
	if err != nil {
		return nil, fmt.Errorf("tpm/quote: %w", err)
	}
	var q *Quote
	err = d.do(func(t transport.TPM) error {
		var err error
		q, err = quoteLocked(t, ak, qualifyingData, want)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm/quote %v: %w", ak.alg, err)
	}
	return q, nil
}

// quoteSelection validates the request and lists the PCRs in digest order.
func (d *Device) quoteSelection(qualifyingData []byte, pcrs []int, banks []crypto.Hash) ([]PCRValue, error) {
	if len(qualifyingData) == 0 || len(qualifyingData) > maxQualifyingData {
		return nil, fmt.Errorf("%w: qualifying data is %d bytes, want 1 to %d", ErrBadQuoteRequest, len(qualifyingData), maxQualifyingData)
	}
	if len(pcrs) == 0 || len(banks) == 0 {
		return nil, fmt.Errorf("%w: %d pcrs, %d banks", ErrBadQuoteRequest, len(pcrs), len(banks))
	}
	idx := slices.Sorted(slices.Values(pcrs))
	if len(slices.Compact(slices.Clone(idx))) != len(idx) {
		return nil, fmt.Errorf("%w: duplicate pcr in %v", ErrBadQuoteRequest, pcrs)
	}
	for _, p := range idx {
		if err := d.checkPCR(p); err != nil {
			return nil, err
		}
	}
	for _, b := range banks {
		if _, ok := algOf(b); !ok {
			return nil, fmt.Errorf("%w: %v", ErrBankNotActive, b)
		}
	}
	var want []PCRValue
	for _, e := range algHash { // ascending algorithm id
		n := 0
		for _, b := range banks {
			if b == e.hash {
				n++
			}
		}
		if n > 1 {
			return nil, fmt.Errorf("%w: duplicate bank %v", ErrBadQuoteRequest, e.hash)
		}
		if n == 0 {
			continue
		}
		if !d.bankActive(e.hash) {
			return nil, fmt.Errorf("%w: %v", ErrBankNotActive, e.hash)
		}
		for _, p := range idx {
			want = append(want, PCRValue{Bank: e.hash, Index: p})
		}
	}
	return want, nil
}

// maxQuoteAttempts bounds the retries when PCRs move under a quote.
const maxQuoteAttempts = 4

func quoteLocked(t transport.TPM, ak *AK, qualifyingData []byte, want []PCRValue) (_ *Quote, err error) {
	keys := make([]PCRKey, len(want))
	for i, w := range want {
		keys[i] = PCRKey{w.Bank, w.Index}
	}
	sel, err := selection(keys)
	if err != nil {
		return nil, err
	}
	h, name, err := loadAK(t, ak)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, flush(t, h)) }()

	for range maxQuoteAttempts {
		vals, err := readPCRs(t, want)
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: h, Name: name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: qualifyingData},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      sel,
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("quote: %w", err)
		}
		q, match, err := checkQuote(rsp, qualifyingData, vals)
		if err != nil {
			return nil, err
		}
		if match {
			return q, nil
		}
	}
	return nil, ErrPCRChanged
}

// checkQuote parses the TPM's answer and reports whether its PCR digest is
// the SHA-256 (the AK's scheme hash) of vals in order.
func checkQuote(rsp *tpm2.QuoteResponse, qualifyingData []byte, vals []PCRValue) (*Quote, bool, error) {
	msg := rsp.Quoted.Bytes()
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](msg)
	if err != nil {
		return nil, false, fmt.Errorf("quote: parse attest: %w", err)
	}
	if !bytes.Equal(att.ExtraData.Buffer, qualifyingData) {
		return nil, false, fmt.Errorf("quote: attest carries other qualifying data")
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return nil, false, fmt.Errorf("quote: %w", err)
	}
	h := crypto.SHA256.New()
	for _, v := range vals {
		h.Write(v.Digest)
	}
	q := &Quote{
		Attest:    bytes.Clone(msg),
		Signature: tpm2.Marshal(rsp.Signature),
		PCRs:      vals,
		Clock:     clockInfoOf(att.ClockInfo),
	}
	return q, bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer), nil
}
