package tpm

import (
	"crypto"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Extend extends PCR pcr in every active bank with one TPM2_PCR_Extend
// carrying one digest per bank, so the banks cannot diverge. digests must
// hold exactly the active banks (Banks), each of its hash's size; otherwise
// Extend returns ErrBadDigests and sends nothing. The TPM computes, per bank,
// new = H(old ‖ digest).
func (d *Device) Extend(pcr int, digests map[crypto.Hash][]byte) error {
	if err := d.checkPCR(pcr); err != nil {
		return fmt.Errorf("tpm/extend: %w", err)
	}
	vals, err := d.digestValues(digests)
	if err != nil {
		return fmt.Errorf("tpm/extend: pcr %d: %w", pcr, err)
	}
	err = d.do(func(t transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   vals,
		}.Execute(t)
		return err
	})
	if err != nil {
		return fmt.Errorf("tpm/extend: pcr %d: %w", pcr, err)
	}
	return nil
}

// ExtendBanks extends PCR pcr in the banks digests names, each with its
// digest, in one TPM2_PCR_Extend, and leaves the other active banks as they
// are. It is for reproducing an event log another measurer wrote, which
// may lack a bank the TPM has (a SHA-1-only firmware log on a TPM with a
// SHA-256 bank): the agent's own records go through Extend, which never
// lets the banks diverge.
func (d *Device) ExtendBanks(pcr int, digests map[crypto.Hash][]byte) error {
	if err := d.checkPCR(pcr); err != nil {
		return fmt.Errorf("tpm/extend: %w", err)
	}
	var vals tpm2.TPMLDigestValues
	for _, h := range d.banks {
		dg, ok := digests[h]
		if !ok {
			continue
		}
		if len(dg) != h.Size() {
			return fmt.Errorf("tpm/extend: pcr %d: %w: %v digest is %d bytes, want %d", pcr, ErrBadDigests, h, len(dg), h.Size())
		}
		alg, _ := algOf(h)
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: alg, Digest: slices.Clone(dg)})
	}
	if len(vals.Digests) != len(digests) {
		return fmt.Errorf("tpm/extend: pcr %d: %w: digests for banks the tpm does not have (it has %v)", pcr, ErrBadDigests, d.banks)
	}
	err := d.do(func(t transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   vals,
		}.Execute(t)
		return err
	})
	if err != nil {
		return fmt.Errorf("tpm/extend: pcr %d: %w", pcr, err)
	}
	return nil
}

// digestValues checks digests against the active banks and builds the
// TPML_DIGEST_VALUES in bank order.
func (d *Device) digestValues(digests map[crypto.Hash][]byte) (tpm2.TPMLDigestValues, error) {
	var vals tpm2.TPMLDigestValues
	for h := range digests {
		if !d.bankActive(h) {
			return vals, fmt.Errorf("%w: %v is not an active bank", ErrBadDigests, h)
		}
	}
	for _, h := range d.banks {
		dg, ok := digests[h]
		if !ok {
			return vals, fmt.Errorf("%w: no digest for active bank %v", ErrBadDigests, h)
		}
		if len(dg) != h.Size() {
			return vals, fmt.Errorf("%w: %v digest is %d bytes, want %d", ErrBadDigests, h, len(dg), h.Size())
		}
		alg, _ := algOf(h) // banks only hold mapped hashes
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: alg, Digest: slices.Clone(dg)})
	}
	return vals, nil
}

// ReadPCR reads PCR pcr in every active bank.
func (d *Device) ReadPCR(pcr int) (map[crypto.Hash][]byte, error) {
	if err := d.checkPCR(pcr); err != nil {
		return nil, fmt.Errorf("tpm/readpcr: %w", err)
	}
	want := make([]PCRValue, 0, len(d.banks))
	for _, h := range d.banks {
		want = append(want, PCRValue{Bank: h, Index: pcr})
	}
	var got []PCRValue
	err := d.do(func(t transport.TPM) error {
		var err error
		got, err = readPCRs(t, want)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm/readpcr: pcr %d: %w", pcr, err)
	}
	out := make(map[crypto.Hash][]byte, len(got))
	for _, v := range got {
		out[v.Bank] = v.Digest
	}
	return out, nil
}

// PCRValue is one PCR of one bank.
type PCRValue struct {
	Bank   crypto.Hash
	Index  int
	Digest []byte
}

// maxReadAttempts bounds how often readPCRs restarts when another TPM client
// changes PCRs between the chunks of one read.
const maxReadAttempts = 4

// readPCRs reads the PCRs in want and returns them with Digest filled, in
// want's order. TPM2_PCR_Read answers at most a TPM-chosen number of PCRs per
// call (8 on common TPMs), so it asks again for the rest; if pcrUpdateCounter
// moves between calls, the set is read again from the start so that all
// values belong to one moment.
func readPCRs(t transport.TPM, want []PCRValue) ([]PCRValue, error) {
	for range maxReadAttempts {
		got, stable, err := readPCRsOnce(t, want)
		if err != nil || stable {
			return got, err
		}
	}
	return nil, fmt.Errorf("pcr/read: %w", ErrPCRChanged)
}

func readPCRsOnce(t transport.TPM, want []PCRValue) (_ []PCRValue, stable bool, _ error) {
	out := slices.Clone(want)
	pending := make(map[PCRKey]int, len(want)) // key → index in out
	for i, w := range want {
		pending[PCRKey{w.Bank, w.Index}] = i
	}
	counter, first := uint32(0), true
	for len(pending) > 0 {
		sel, err := selection(keysOf(pending))
		if err != nil {
			return nil, false, err
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(t)
		if err != nil {
			return nil, false, fmt.Errorf("pcr/read: %w", err)
		}
		if !first && rsp.PCRUpdateCounter != counter {
			return nil, false, nil
		}
		counter, first = rsp.PCRUpdateCounter, false
		keys, err := selected(rsp.PCRSelectionOut)
		if err != nil {
			return nil, false, err
		}
		if len(keys) == 0 || len(keys) != len(rsp.PCRValues.Digests) {
			return nil, false, fmt.Errorf("pcr/read: tpm returned %d selected pcrs and %d values", len(keys), len(rsp.PCRValues.Digests))
		}
		for i, k := range keys {
			j, ok := pending[k]
			if !ok {
				return nil, false, fmt.Errorf("pcr/read: tpm returned unrequested %v pcr %d", k.Bank, k.Index)
			}
			dg := rsp.PCRValues.Digests[i].Buffer
			if len(dg) != k.Bank.Size() {
				return nil, false, fmt.Errorf("pcr/read: %v pcr %d value is %d bytes", k.Bank, k.Index, len(dg))
			}
			out[j].Digest = dg
			delete(pending, k)
		}
	}
	return out, true, nil
}

// PCRKey names one PCR of one bank.
type PCRKey struct {
	Bank  crypto.Hash
	Index int
}

func keysOf(m map[PCRKey]int) []PCRKey {
	ks := make([]PCRKey, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// selection builds a TPML_PCR_SELECTION for keys: banks in ascending
// algorithm order, each with a bitmap of at least 3 bytes (the PC Client
// minimum, Part 2 §10.6.2).
func selection(keys []PCRKey) (tpm2.TPMLPCRSelection, error) {
	var sel tpm2.TPMLPCRSelection
	byBank := map[crypto.Hash][]int{}
	for _, k := range keys {
		byBank[k.Bank] = append(byBank[k.Bank], k.Index)
	}
	for _, e := range algHash {
		idx, ok := byBank[e.hash]
		if !ok {
			continue
		}
		bm := make([]byte, 3)
		for _, i := range idx {
			if i < 0 || i > 255 {
				return sel, fmt.Errorf("%w: %d", ErrBadPCR, i)
			}
			for len(bm) <= i/8 {
				bm = append(bm, 0)
			}
			bm[i/8] |= 1 << (i % 8)
		}
		sel.PCRSelections = append(sel.PCRSelections, tpm2.TPMSPCRSelection{Hash: e.alg, PCRSelect: bm})
		delete(byBank, e.hash)
	}
	for h := range byBank {
		return sel, fmt.Errorf("%w: %v", ErrBankNotActive, h)
	}
	return sel, nil
}

// selected lists the PCRs of a selection in the order the TPM digests them:
// selections in list order, and within one, ascending index.
func selected(sel tpm2.TPMLPCRSelection) ([]PCRKey, error) {
	var keys []PCRKey
	for _, s := range sel.PCRSelections {
		h, ok := hashOf(s.Hash)
		if !ok {
			return nil, fmt.Errorf("pcr/select: unsupported hash algorithm %#x", uint16(s.Hash))
		}
		for i, b := range s.PCRSelect {
			for bit := range 8 {
				if b&(1<<bit) != 0 {
					keys = append(keys, PCRKey{h, i*8 + bit})
				}
			}
		}
	}
	return keys, nil
}
