package attest

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// A State's boot section follows its records, only when the State keeps
// any of it (States of boots verified before it existed have none):
//
//	u8 1 |
//	u8 banks, per bank: u16 TPM_ALG_ID, value (the boot header's start; no banks: unknown) |
//	u32 len, the boot header's cel.KernelInfo encoding (empty: none) |
//	u8 0, or u8 1 and the verified firmware log:
//	    u8 boot pcrs, each u8 (ascending, without the agent's) |
//	    u8 banks, per bank: u16 TPM_ALG_ID, the quoted value of each boot
//	        pcr and of the agent's pcr, in ascending pcr order |
//	    u32 len, the firmware log
//
// Decoding verifies the firmware log against the values again
// (bootchain.Verify), so a decoded State holds the same chain as the one
// encoded.
const stateBootSection = 1

// appendBoot appends the boot section, if any.
func (s *State) appendBoot(b []byte) []byte {
	sb := &s.boot
	if sb.empty() {
		return b
	}
	b = append(b, stateBootSection)
	banks := sortedBanks(sb.start)
	b = append(b, byte(len(banks)))
	for _, h := range banks {
		id, _ := cel.AlgID(h)
		b = binary.BigEndian.AppendUint16(b, id)
		b = append(b, sb.start[h]...)
	}
	var k []byte
	if sb.kernel != nil {
		k, _ = sb.kernel.MarshalBinary() // it parsed from a boot header: it encodes
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
	b = append(b, k...)
	c := sb.chain
	if c == nil {
		return append(b, 0)
	}
	b = append(b, 1, byte(len(c.pcrs)))
	for _, p := range c.pcrs {
		b = append(b, byte(p))
	}
	all := c.allPCRs(s.pcr)
	qb := slices.Collect(maps.Keys(c.quoted))
	qb, _ = cel.SortBanks(qb)
	b = append(b, byte(len(qb)))
	for _, h := range qb {
		id, _ := cel.AlgID(h)
		b = binary.BigEndian.AppendUint16(b, id)
		for _, p := range all {
			b = append(b, c.quoted[h][p]...)
		}
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.log)))
	return append(b, c.log...)
}

// allPCRs are the chain's boot PCRs and the agent's, ascending.
func (c *bootChain) allPCRs(agent int) []int {
	return slices.Sorted(slices.Values(append(slices.Clone(c.pcrs), agent)))
}

// bootData is a decoded boot section before its checks.
type bootData struct {
	present bool
	start   map[crypto.Hash][]byte
	kernel  []byte
	chain   bool
	pcrs    []int
	quoted  map[crypto.Hash]map[int][]byte
	log     []byte
}

// readBoot reads the boot section, if the State has one; pcr is the
// State's PCR (read before).
func (r *wireReader) readBoot(pcr int) bootData {
	var d bootData
	if r.err != nil || r.pos == len(r.b) {
		return d
	}
	off := r.pos
	if t := r.u8("boot section"); r.err == nil && t != stateBootSection {
		r.failf("boot section", off, "tag %d, want %d", t, stateBootSection)
	}
	d.present = true
	d.start = r.bankValues("boot start")
	d.kernel = r.take("boot kernel", int(r.u32("boot kernel length")))
	off = r.pos
	switch c := r.u8("boot chain"); {
	case r.err != nil:
		return d
	case c > 1:
		r.failf("boot chain", off, "value %d, want 0 or 1", c)
		return d
	case c == 0:
		return d
	}
	d.chain = true
	n := int(r.u8("boot pcr count"))
	for range n {
		d.pcrs = append(d.pcrs, int(r.u8("boot pcr")))
	}
	all := slices.Sorted(slices.Values(append(slices.Clone(d.pcrs), pcr)))
	nb := int(r.u8("chain bank count"))
	d.quoted = map[crypto.Hash]map[int][]byte{}
	prev := uint16(0)
	for range nb {
		off := r.pos
		id := r.u16("chain bank")
		h, ok := cel.HashForAlg(id)
		if r.err != nil {
			return d
		}
		if !ok || id <= prev {
			r.failf("chain bank", off, "algorithm %#04x unsupported or out of order", id)
			return d
		}
		prev = id
		d.quoted[h] = map[int][]byte{}
		for _, p := range all {
			d.quoted[h][p] = bytes.Clone(r.take("chain value", h.Size()))
		}
	}
	off = r.pos
	size := r.u32("firmware log length")
	if r.err == nil && size > evidence.MaxFirmwareLogSize {
		r.failf("firmware log length", off, "%d bytes, limit %d", size, evidence.MaxFirmwareLogSize)
		return d
	}
	d.log = bytes.Clone(r.take("firmware log", int(size)))
	return d
}

// bankValues reads a u8 count of banks, each a u16 TPM_ALG_ID and its
// value, ascending; no banks is nil.
func (r *wireReader) bankValues(field string) map[crypto.Hash][]byte {
	n := int(r.u8(field + " bank count"))
	if n == 0 || r.err != nil {
		return nil
	}
	out := map[crypto.Hash][]byte{}
	prev := uint16(0)
	for range n {
		off := r.pos
		id := r.u16(field + " bank")
		h, ok := cel.HashForAlg(id)
		if r.err != nil {
			return nil
		}
		if !ok || id <= prev {
			r.failf(field, off, "algorithm %#04x unsupported or out of order", id)
			return nil
		}
		prev = id
		out[h] = bytes.Clone(r.take(field+" value", h.Size()))
	}
	return out
}

var errBootSection = errors.New("boot section")

// stateBoot checks a decoded boot section and verifies its firmware log
// again. Canonical: a section is present only when it holds something,
// banks ascend, boot PCRs ascend without the agent's.
func (d *bootData) stateBoot(pcr int) (stateBoot, error) {
	var sb stateBoot
	if !d.present {
		return sb, nil
	}
	bad := func(format string, args ...any) (stateBoot, error) {
		return stateBoot{}, fmt.Errorf("%w: %s", errBootSection, fmt.Sprintf(format, args...))
	}
	if d.start != nil {
		if _, err := cel.NewReplayer(d.start); err != nil {
			return bad("start: %v", err)
		}
		sb.start = d.start
	}
	if len(d.kernel) > 0 {
		k, err := cel.ParseKernelInfo(d.kernel)
		if err != nil {
			return bad("kernel: %v", err)
		}
		sb.kernel = k
	}
	if d.chain {
		if len(d.pcrs) == 0 || !slices.IsSorted(d.pcrs) || len(slices.Compact(slices.Clone(d.pcrs))) != len(d.pcrs) ||
			slices.Contains(d.pcrs, pcr) || d.pcrs[0] < 0 || d.pcrs[len(d.pcrs)-1] > 23 {
			return bad("boot pcrs %v", d.pcrs)
		}
		if len(d.quoted) == 0 || len(d.log) == 0 {
			return bad("a chain without values or log")
		}
		c, err := verifyChain(d.log, d.pcrs, pcr, d.quoted, true)
		if err != nil {
			return bad("firmware log: %v", err)
		}
		sb.chain = c
	}
	if sb.empty() {
		return bad("present but empty")
	}
	return sb, nil
}

// bootJSON is the JSON form of the boot section: banks by name, values
// in hex, the kernel facts and the firmware log in base64 (their binary
// encodings).
type bootJSON struct {
	Start  map[string]string `json:"start,omitempty"`
	Kernel []byte            `json:"kernel,omitempty"`
	Chain  *chainJSON        `json:"chain,omitempty"`
}

type chainJSON struct {
	PCRs        []int                        `json:"pcrs"`
	Quoted      map[string]map[string]string `json:"quoted"`
	FirmwareLog []byte                       `json:"firmware_log"`
}

func (s *State) bootJSON() *bootJSON {
	sb := &s.boot
	if sb.empty() {
		return nil
	}
	j := &bootJSON{}
	if sb.start != nil {
		j.Start = map[string]string{}
		for h, v := range sb.start {
			j.Start[cel.BankName(h)] = hex.EncodeToString(v)
		}
	}
	if sb.kernel != nil {
		j.Kernel, _ = sb.kernel.MarshalBinary()
	}
	if c := sb.chain; c != nil {
		cj := &chainJSON{PCRs: slices.Clone(c.pcrs), Quoted: map[string]map[string]string{}, FirmwareLog: c.log}
		for h, vals := range c.quoted {
			m := map[string]string{}
			for p, v := range vals {
				m[strconv.Itoa(p)] = hex.EncodeToString(v)
			}
			cj.Quoted[cel.BankName(h)] = m
		}
		j.Chain = cj
	}
	return j
}

// bootData converts the JSON form, checking names and hex; the checks of
// stateBoot follow.
func (j *bootJSON) bootData(pcr int) (bootData, error) {
	d := bootData{present: j != nil}
	if j == nil {
		return d, nil
	}
	var err error
	if j.Start != nil {
		if d.start, err = jsonBankValues(j.Start); err != nil {
			return d, fmt.Errorf("%w: start: %w", errBootSection, err)
		}
	}
	d.kernel = j.Kernel
	if c := j.Chain; c != nil {
		if len(c.FirmwareLog) > evidence.MaxFirmwareLogSize {
			return d, fmt.Errorf("%w: firmware log of %d bytes", errBootSection, len(c.FirmwareLog))
		}
		d.chain, d.pcrs, d.log = true, slices.Clone(c.PCRs), c.FirmwareLog
		all := slices.Sorted(slices.Values(append(slices.Clone(c.PCRs), pcr)))
		d.quoted = map[crypto.Hash]map[int][]byte{}
		for name, vals := range c.Quoted {
			h, ok := bankByName(name)
			if !ok {
				return d, fmt.Errorf("%w: bank %q", errBootSection, name)
			}
			if len(vals) != len(all) {
				return d, fmt.Errorf("%w: %s: %d values, want %d", errBootSection, name, len(vals), len(all))
			}
			d.quoted[h] = map[int][]byte{}
			for _, p := range all {
				v, err := hex.DecodeString(vals[strconv.Itoa(p)])
				if err != nil || len(v) != h.Size() {
					return d, fmt.Errorf("%w: %s pcr %d value %q", errBootSection, name, p, vals[strconv.Itoa(p)])
				}
				d.quoted[h][p] = v
			}
		}
	}
	return d, nil
}

func jsonBankValues(m map[string]string) (map[crypto.Hash][]byte, error) {
	out := map[crypto.Hash][]byte{}
	for name, v := range m {
		h, ok := bankByName(name)
		if !ok {
			return nil, fmt.Errorf("bank %q", name)
		}
		val, err := hex.DecodeString(v)
		if err != nil || len(val) != h.Size() {
			return nil, fmt.Errorf("%s value %q", name, v)
		}
		out[h] = val
	}
	return out, nil
}
