package verifier

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// TPM2Tools is a quote in the files tpm2-tools' tpm2_checkquote reads
// (tpm2-tools 5.x), by file name:
//
//   - quote.msg: the TPMS_ATTEST the TPM signed (tpm2_quote -m);
//   - quote.sig: the TPMT_SIGNATURE over it (tpm2_quote -s, format tss);
//   - quote.pcrs: the quoted PCR values in tpm2-tools' PCR file format
//     (tpm2_quote -o: a TPML_PCR_SELECTION, a count, then TPML_DIGEST
//     structures, in host byte order), which names its own selection;
//   - ak.pem: the attestation key's public key (SubjectPublicKeyInfo, PEM);
//   - ak.pub: the same key as a TPM2B_PUBLIC (tpm2_createak -u);
//   - qualification: the qualifying data the quote must carry, hex, for
//     -q: derived from the verifier's own nonce and the evidence's
//     inclusion proof (docs/verification.md), never read from the quote;
//   - nonce: the verifier's nonce, hex.
//
// Args is tpm2_checkquote's command line over files in a directory.
type TPM2Tools struct {
	Files map[string][]byte
	// Hash is the quote's signature hash, tpm2_checkquote's -g (sha256).
	Hash string
	// Qualification is the qualifying data, hex.
	Qualification string
}

// Args returns the tpm2_checkquote arguments for the files in dir.
func (t *TPM2Tools) Args(dir string) []string {
	p := func(name string) string { return filepath.Join(dir, name) }
	return []string{"-u", p("ak.pem"), "-m", p("quote.msg"), "-s", p("quote.sig"), "-f", p("quote.pcrs"),
		"-g", t.Hash, "-q", t.Qualification}
}

// ExportTPM2Tools lays out evidence for tpm2_checkquote. The AK is the one
// ak pins (a TPMT_PUBLIC), not the evidence's own: checking a quote against
// the key it came with proves nothing. nonce is the verifier's nonce.
func ExportTPM2Tools(ev *evidence.Evidence, nonce, ak []byte) (*TPM2Tools, error) {
	if err := evidence.CheckNonce(nonce); err != nil {
		return nil, fmt.Errorf("tpm2-tools: %w", err)
	}
	qual, err := ev.Proof.QualifyingData(nonce)
	if err != nil {
		return nil, fmt.Errorf("tpm2-tools: %w", err)
	}
	pub, err := attest.AKPublicKey(ak)
	if err != nil {
		return nil, fmt.Errorf("tpm2-tools: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tpm2-tools: ak: %w", err)
	}
	hash, err := signatureHash(ev.Signature)
	if err != nil {
		return nil, fmt.Errorf("tpm2-tools: %w", err)
	}
	pcrs, err := pcrFile(ev.PCRs)
	if err != nil {
		return nil, fmt.Errorf("tpm2-tools: %w", err)
	}
	if len(ak) > 0xffff {
		return nil, errors.New("tpm2-tools: ak public area too large")
	}
	return &TPM2Tools{
		Files: map[string][]byte{
			"quote.msg":     ev.Attest,
			"quote.sig":     ev.Signature,
			"quote.pcrs":    pcrs,
			"ak.pem":        pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
			"ak.pub":        append(binary.BigEndian.AppendUint16(nil, uint16(len(ak))), ak...),
			"qualification": []byte(hex.EncodeToString(qual) + "\n"),
			"nonce":         []byte(hex.EncodeToString(nonce) + "\n"),
		},
		Hash:          hash,
		Qualification: hex.EncodeToString(qual),
	}, nil
}

// signatureHash names the hash of a TPMT_SIGNATURE (RSASSA, RSAPSS, ECDSA:
// sigAlg, then the scheme's hashAlg; TPM 2.0 Part 2 §11.3.4) in
// tpm2-tools' words.
func signatureHash(sig []byte) (string, error) {
	if len(sig) < 4 {
		return "", errors.New("signature too short")
	}
	h, ok := cel.HashForAlg(binary.BigEndian.Uint16(sig[2:4]))
	if !ok {
		return "", fmt.Errorf("signature hash algorithm %#04x", binary.BigEndian.Uint16(sig[2:4]))
	}
	return cel.BankName(h), nil // sha1, sha256, sha384, sha512: tpm2-tools' names
}

// Sizes of tpm2-tools' PCR file structures (TSS2 headers, x86-64 and
// arm64 layout): TPML_PCR_SELECTION with 16 TPMS_PCR_SELECTIONs of 8 bytes
// (u16 hash, u8 sizeofSelect, u8[4] pcrSelect, padding), and TPML_DIGEST
// with 8 TPM2B_DIGESTs of 66 bytes (u16 size, u8[64]).
const (
	pcrSelectionSize = 4 + 16*8
	pcrDigestsSize   = 4 + 8*66
)

// pcrFile writes the PCR values in the file format tpm2_quote -o writes
// and tpm2_checkquote -f reads: the selection (banks in the quote's
// order), the number of TPML_DIGEST structures, then the values in
// selection order, eight per TPML_DIGEST.
func pcrFile(vals []evidence.PCRValue) ([]byte, error) {
	le := binary.LittleEndian
	type sel struct {
		alg    uint16
		bitmap [4]byte
	}
	var sels []sel
	for _, v := range vals {
		alg, ok := cel.AlgID(v.Bank)
		if !ok || v.Index < 0 || v.Index > 23 || len(v.Digest) > 64 {
			return nil, fmt.Errorf("pcr value %v %d of %d bytes", v.Bank, v.Index, len(v.Digest))
		}
		if len(sels) == 0 || sels[len(sels)-1].alg != alg {
			if len(sels) == 16 {
				return nil, errors.New("more than 16 banks")
			}
			sels = append(sels, sel{alg: alg})
		}
		sels[len(sels)-1].bitmap[v.Index/8] |= 1 << (v.Index % 8)
	}
	out := make([]byte, pcrSelectionSize)
	le.PutUint32(out, uint32(len(sels)))
	for i, s := range sels {
		o := 4 + i*8
		le.PutUint16(out[o:], s.alg)
		out[o+2] = 3
		copy(out[o+3:o+7], s.bitmap[:])
	}
	out = le.AppendUint32(out, uint32((len(vals)+7)/8))
	for i := 0; i < len(vals); i += 8 {
		blk := make([]byte, pcrDigestsSize)
		chunk := vals[i:min(len(vals), i+8)]
		le.PutUint32(blk, uint32(len(chunk)))
		for j, v := range chunk {
			le.PutUint16(blk[4+j*66:], uint16(len(v.Digest)))
			copy(blk[6+j*66:], v.Digest)
		}
		out = append(out, blk...)
	}
	return out, nil
}
