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
	// quote's selection order (banks by ascending TPM_ALG_ID, then PCRs by
	// ascending index): the agent's PCR and the boot PCRs quoted with it.
	// attest.Verify recomputes the quote's PCR digest from them before
	// using any.
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
	// FirmwareLog is the machine's TCG PC Client firmware event log, when
	// the verifier asked for it and the agent has one (at most
	// MaxFirmwareLogSize bytes). The quote does not cover it; a verifier
	// replays it against the quoted boot PCRs.
	FirmwareLog []byte
}

// MaxFirmwareLogSize bounds a firmware event log on the wire: the limit
// bootchain.Verify reads (bootchain.MaxLogSize; a test keeps them equal).
// Real logs are tens of kilobytes.
const MaxFirmwareLogSize = 8 << 20

// MaxPCRsPerBank bounds the PCR values of one bank: a PC Client TPM has
// 24 PCRs.
const MaxPCRsPerBank = 24

// PCRValue is one PCR bank's value.
type PCRValue struct {
	Bank   crypto.Hash
	Index  int
	Digest []byte
}
