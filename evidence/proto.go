package evidence

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"

	"github.com/bpfattest/bpfattest/cel"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// ErrWire is wrapped by every error converting a wire message: a field
// out of range or of an unknown kind. attest.Verify checks the contents; the
// conversion only refuses what the Go types cannot hold.
var ErrWire = errors.New("malformed wire message")

// Bounds of a wire Evidence that attest.Verify would refuse anyway, checked here
// so nothing larger is copied.
const (
	maxWireBanks    = 16                            // TPM_ALG_IDs a TPM could allocate; four are known
	maxWirePCRs     = maxWireBanks * MaxPCRsPerBank // every PCR of every bank
	maxWireSiblings = 32                            // a batch of 2^32 nonces
)

// FromProto converts the wire Evidence (proto/bpfattest/v1) to an
// Evidence. Bytes are copied, never re-encoded: the TPM structures and log
// records are what the agent sent. Fields that do not fit (a PCR index
// above 23, an unknown bank, more than MaxPCRsPerBank values of one bank, a
// firmware log over MaxFirmwareLogSize, an oversized proof) are errors
// wrapping ErrWire naming the field; nothing else is checked here.
func FromProto(m *pb.Evidence) (*Evidence, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("evidence: %w: %s", ErrWire, fmt.Sprintf(format, args...))
	}
	if m == nil {
		return nil, bad("no evidence")
	}
	if err := cel.CheckPCR(int(m.GetPcr())); err != nil {
		return nil, bad("%v", err)
	}
	if n := len(m.GetPcrs()); n > maxWirePCRs {
		return nil, bad("pcrs: %d values, limit %d", n, maxWirePCRs)
	}
	if n := len(m.GetFirmwareLog()); n > MaxFirmwareLogSize {
		return nil, bad("firmware_log: %d bytes, limit %d", n, MaxFirmwareLogSize)
	}
	ev := &Evidence{
		AKPublic:      bytes.Clone(m.GetAkPublic()),
		Attest:        bytes.Clone(m.GetAttest()),
		Signature:     bytes.Clone(m.GetSignature()),
		PCR:           int(m.GetPcr()),
		Log:           bytes.Clone(m.GetLog()),
		FromRecord:    m.GetFromRecord(),
		EKCertificate: bytes.Clone(m.GetEkCertificate()),
		FirmwareLog:   bytes.Clone(m.GetFirmwareLog()),
	}
	perBank := map[crypto.Hash]int{}
	for i, v := range m.GetPcrs() {
		if v.GetHashAlg() > 0xffff {
			return nil, bad("pcrs[%d]: hash_alg %#x", i, v.GetHashAlg())
		}
		h, ok := cel.HashForAlg(uint16(v.GetHashAlg()))
		if !ok {
			return nil, bad("pcrs[%d]: unsupported hash_alg %#04x", i, v.GetHashAlg())
		}
		if err := cel.CheckPCR(int(v.GetIndex())); err != nil {
			return nil, bad("pcrs[%d]: %v", i, err)
		}
		perBank[h]++
		if perBank[h] > MaxPCRsPerBank {
			return nil, bad("pcrs[%d]: more than %d %s values", i, MaxPCRsPerBank, cel.BankName(h))
		}
		ev.PCRs = append(ev.PCRs, PCRValue{Bank: h, Index: int(v.GetIndex()), Digest: bytes.Clone(v.GetDigest())})
	}
	p := m.GetProof()
	if n := len(p.GetSiblings()); n > maxWireSiblings {
		return nil, bad("proof: %d siblings, limit %d", n, maxWireSiblings)
	}
	ev.Proof = InclusionProof{Index: p.GetIndex(), Size: p.GetSize()}
	for _, s := range p.GetSiblings() {
		ev.Proof.Siblings = append(ev.Proof.Siblings, bytes.Clone(s))
	}
	return ev, nil
}

// ToProto converts an Evidence to the wire message. The message shares
// ev's byte slices (the agent hands a quote's log over without a copy):
// neither may change while the other is in use. A PCR index outside 0..23,
// a bank without a TPM_ALG_ID or a firmware log over MaxFirmwareLogSize is
// an error wrapping ErrWire.
func ToProto(ev *Evidence) (*pb.Evidence, error) {
	if ev == nil {
		return nil, fmt.Errorf("evidence: %w: no evidence", ErrWire)
	}
	if err := cel.CheckPCR(ev.PCR); err != nil {
		return nil, fmt.Errorf("evidence: %w: %w", ErrWire, err)
	}
	if n := len(ev.FirmwareLog); n > MaxFirmwareLogSize {
		return nil, fmt.Errorf("evidence: %w: firmware log of %d bytes, limit %d", ErrWire, n, MaxFirmwareLogSize)
	}
	m := &pb.Evidence{
		AkPublic:      ev.AKPublic,
		Attest:        ev.Attest,
		Signature:     ev.Signature,
		Pcr:           uint32(ev.PCR),
		Log:           ev.Log,
		FromRecord:    ev.FromRecord,
		EkCertificate: ev.EKCertificate,
		FirmwareLog:   ev.FirmwareLog,
		Proof:         &pb.InclusionProof{Index: ev.Proof.Index, Size: ev.Proof.Size, Siblings: ev.Proof.Siblings},
	}
	for i, v := range ev.PCRs {
		id, ok := cel.AlgID(v.Bank)
		if !ok {
			return nil, fmt.Errorf("evidence: %w: pcrs[%d]: bank %v has no TPM_ALG_ID", ErrWire, i, v.Bank)
		}
		if err := cel.CheckPCR(v.Index); err != nil {
			return nil, fmt.Errorf("evidence: %w: pcrs[%d]: %w", ErrWire, i, err)
		}
		m.Pcrs = append(m.Pcrs, &pb.PCRValue{HashAlg: uint32(id), Index: uint32(v.Index), Digest: v.Digest})
	}
	return m, nil
}
