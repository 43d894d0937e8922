package evidence

import (
	"crypto"
)

// Evidence is what an agent returns for one quote request. TPM structures
// travel as the TPM produced them and are parsed by the verifier only.
type Evidence struct {
	// AKPublic is the attestation key's TPMT_PUBLIC.
	AKPublic []byte
	// Attest is the TPMS_ATTEST the TPM signed (the TPM2B's contents).
	Attest []byte
	// Signature is the TPMT_SIGNATURE over Attest.
	Signature []byte
	// PCRs are the values the agent claims the quote covers, in the
	// quote's selection order. attest.Verify recomputes the quote's PCR digest
	// from them before using any.
	PCRs []PCRValue
	// PCR is the index of the PCR the agent extends.
	PCR int
	// Log holds canonical CEL TLV records of the current boot, numbered
	// from FromRecord to the end of the log at quote time.
	Log        []byte
	FromRecord uint64
	// Proof places the verifier's nonce among the nonces the agent
	// coalesced into this quote (see Batch). Its leaf is recomputed by the
	// verifier from its own nonce.
	Proof InclusionProof
	// EKCertificate is the endorsement key certificate (DER), if the TPM
	// has one.
	EKCertificate []byte
}

// PCRValue is one PCR bank's value.
type PCRValue struct {
	Bank   crypto.Hash
	Index  int
	Digest []byte
}
