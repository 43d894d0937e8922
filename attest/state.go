package attest

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/bpfattest/bpfattest/cel"
)

// State is what a verifier keeps between two verifications of one agent:
// the boot it verified (TPM resetCount and kernel boot id), the TPM clock
// of the last verified quote, the number of the next record it has not
// seen, the PCR values the log replayed to, and the verified records that
// still describe the kernel (present and pending loads, unmeasured programs,
// failed loads, recoveries). The next verification asks the agent for the
// log from NextRecord only and replays from there.
//
// A State is immutable and only made by Verify or by decoding one of its
// encodings (MarshalBinary, MarshalJSON), so any verifier replica holding
// the bytes continues where another stopped. It is the verifier's own
// memory: store it where the agent cannot change it. Decoding checks its
// shape and rebuilds the inventory from its records, but cannot tell a
// State that another verifier produced from one an attacker wrote.
type State struct {
	pcr     int
	bootID  string
	clock   cel.ClockInfo
	next    uint64
	running map[crypto.Hash][]byte
	inv     *inventory
	// boot is the boot header's starting values and kernel facts, and the
	// firmware log verified for this boot (state_boot.go).
	boot stateBoot
	// akPublic and ak are the AK that Verify parsed and checked when it
	// made this State, so that the next Verify with the same TPMT_PUBLIC
	// bytes need not parse them again. Not encoded: a decoded State
	// parses its first AK afresh.
	akPublic []byte
	ak       *akKey
}

// NextRecord is the number of the first record the verifier has not
// verified: the from_record of the next request.
func (s *State) NextRecord() uint64 { return s.next }

// BootID returns the kernel boot id of the verified boot.
func (s *State) BootID() string { return s.bootID }

// ResetCount returns the TPM resetCount of the verified boot.
func (s *State) ResetCount() uint32 { return s.clock.ResetCount }

// Clock returns the clock information of the last verified quote.
func (s *State) Clock() cel.ClockInfo { return s.clock }

// PCR returns the index of the agent's PCR.
func (s *State) PCR() int { return s.pcr }

// BootChainVerified reports whether a firmware log verified against the
// boot PCRs of this State's boot: the next quote of the same boot needs
// none (Result.Boot carries the chain over).
func (s *State) BootChainVerified() bool { return s.boot.chain != nil }

// Running returns the PCR values the verified records replay to, per bank.
func (s *State) Running() map[crypto.Hash][]byte { return cloneValues(s.running) }

func cloneValues(m map[crypto.Hash][]byte) map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(m))
	for h, v := range m {
		out[h] = bytes.Clone(v)
	}
	return out
}

// The binary encoding, version 1, all integers big-endian:
//
//	magic "BPFV" | u16 version | u8 pcr | u16 len, boot id |
//	u64 clock | u32 resetCount | u32 restartCount | u8 safe |
//	u64 next record | u8 banks, per bank: u16 TPM_ALG_ID, value |
//	u32 records, per record: u64 recnum, u16 content type, u32 len, content |
//	the boot section (state_boot.go), only when the State keeps one
//
// Banks ascend by algorithm id and records by number, so equal States
// encode to equal bytes.
const stateMagic = "BPFV"

const stateVersion = 1

// maxStateRecords bounds the records a decoded State may carry.
const maxStateRecords = 1 << 20

// ErrState is wrapped by every error decoding a State.
var ErrState = errors.New("invalid verifier state")

// MarshalBinary returns the State's canonical binary encoding.
func (s *State) MarshalBinary() ([]byte, error) {
	if s == nil || s.inv == nil {
		return nil, fmt.Errorf("attest/state: %w: empty state", ErrState)
	}
	b := []byte(stateMagic)
	b = binary.BigEndian.AppendUint16(b, stateVersion)
	b = append(b, byte(s.pcr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.bootID)))
	b = append(b, s.bootID...)
	b = binary.BigEndian.AppendUint64(b, s.clock.Clock)
	b = binary.BigEndian.AppendUint32(b, s.clock.ResetCount)
	b = binary.BigEndian.AppendUint32(b, s.clock.RestartCount)
	b = append(b, boolByte(s.clock.Safe))
	b = binary.BigEndian.AppendUint64(b, s.next)
	banks := sortedBanks(s.running)
	b = append(b, byte(len(banks)))
	for _, h := range banks {
		id, _ := cel.AlgID(h)
		b = binary.BigEndian.AppendUint16(b, id)
		b = append(b, s.running[h]...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(s.inv.len()))
	for _, r := range s.inv.live.All() {
		b = binary.BigEndian.AppendUint64(b, r.rn)
		b = binary.BigEndian.AppendUint16(b, uint16(r.typ))
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.content)))
		b = append(b, r.content...)
	}
	return s.appendBoot(b), nil
}

// UnmarshalBinary decodes a State written by MarshalBinary. It checks every
// field and rebuilds the inventory from the records; the receiver is left
// unchanged on error.
func (s *State) UnmarshalBinary(b []byte) error {
	r := wireReader{b: b}
	if m := r.take("magic", 4); r.err == nil && string(m) != stateMagic {
		r.failf("magic", 0, "%q, want %q", m, stateMagic)
	}
	if v := r.u16("version"); r.err == nil && v != stateVersion {
		r.failf("version", 4, "%d, this reader knows %d", v, stateVersion)
	}
	var d stateData
	d.pcr = int(r.u8("pcr"))
	d.bootID = string(r.take("boot id", int(r.u16("boot id length"))))
	d.clock.Clock = r.u64("clock")
	d.clock.ResetCount = r.u32("resetCount")
	d.clock.RestartCount = r.u32("restartCount")
	safeOff := r.pos
	switch v := r.u8("safe"); {
	case r.err == nil && v > 1:
		r.failf("safe", safeOff, "value %d, want 0 or 1", v)
	default:
		d.clock.Safe = v == 1
	}
	d.next = r.u64("next record")
	nb := int(r.u8("bank count"))
	d.running = map[crypto.Hash][]byte{}
	for i := 0; i < nb && r.err == nil; i++ {
		off := r.pos
		h, ok := cel.HashForAlg(r.u16("bank"))
		if r.err != nil {
			break
		}
		if !ok {
			r.failf("bank", off, "unsupported algorithm")
			break
		}
		d.running[h] = bytes.Clone(r.take("bank value", h.Size()))
	}
	nOff := r.pos
	n := r.u32("record count")
	if r.err == nil && n > maxStateRecords {
		r.failf("record count", nOff, "%d records, limit %d", n, maxStateRecords)
	}
	for i := 0; i < int(n) && r.err == nil; i++ {
		var rec numberedRecord
		rec.rn = r.u64("record number")
		rec.typ = cel.ContentType(r.u16("record type"))
		rec.content = r.take("record content", int(r.u32("record length")))
		d.records = append(d.records, rec)
	}
	d.boot = r.readBoot(d.pcr)
	if err := r.done("state"); err != nil {
		return fmt.Errorf("attest/state: %w: %w", ErrState, err)
	}
	if nb != len(d.running) {
		return fmt.Errorf("attest/state: %w: duplicate bank", ErrState)
	}
	ns, err := d.state()
	if err != nil {
		return err
	}
	*s = *ns
	return nil
}

// stateData is a decoded State before its checks.
type stateData struct {
	pcr     int
	bootID  string
	clock   cel.ClockInfo
	next    uint64
	running map[crypto.Hash][]byte
	records []numberedRecord
	boot    bootData
}

// state checks the decoded fields and rebuilds the inventory.
func (d *stateData) state() (*State, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("attest/state: %w: %s", ErrState, fmt.Sprintf(format, args...))
	}
	if err := cel.CheckPCR(d.pcr); err != nil {
		return nil, bad("%v", err)
	}
	if d.bootID == "" || d.next == 0 || len(d.running) == 0 {
		return nil, bad("no boot id, records or running values")
	}
	if _, err := cel.NewReplayer(d.running); err != nil {
		return nil, bad("running values: %v", err)
	}
	for i, r := range d.records {
		if r.rn >= d.next || (i > 0 && r.rn <= d.records[i-1].rn) {
			return nil, bad("record %d out of order or past next record %d", r.rn, d.next)
		}
		r.content = bytes.Clone(r.content)
		d.records[i] = r
	}
	inv, err := rebuild(d.records)
	if err != nil {
		return nil, bad("%v", err)
	}
	boot, err := d.boot.stateBoot(d.pcr)
	if err != nil {
		return nil, bad("%v", err)
	}
	return &State{pcr: d.pcr, bootID: d.bootID, clock: d.clock, next: d.next, running: cloneValues(d.running), inv: inv, boot: boot}, nil
}

// sortedBanks returns m's banks in canonical order (ascending algorithm id).
func sortedBanks(m map[crypto.Hash][]byte) []crypto.Hash {
	banks, _ := cel.SortBanks(slices.Collect(maps.Keys(m)))
	return banks
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
