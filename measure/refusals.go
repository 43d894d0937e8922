package measure

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/bpfattest/bpfattest/measure/cms"
)

// Refusals counts load requests the agent answered without a log record
// each, so that none is hidden while the log's growth stays bounded:
//
//   - refusals past the requester's rate of refusal records: measured and
//     refused by policy like any other, then counted here instead of being
//     recorded as a measurement and a result;
//   - requests turned away before they were measured: over the requester's
//     load rate, or over the loads or bytes the agent takes in at once.
//     Nothing of them was parsed, measured or loaded.
//
// The agent writes a Refusals record at least once a second while it has
// counts to write, and before every quote, so a quote's log counts every
// request answered before the quote was asked.
type Refusals struct {
	// Requesters holds one entry per uid and gid, ascending by uid, then
	// gid.
	Requesters []RefusalCount
}

// RefusalCount is what one requester (uid and gid at connect time) had
// counted.
type RefusalCount struct {
	UID, GID uint32
	// Refused are measured refusals not recorded one by one; Verdicts
	// splits them by signature verdict.
	Refused uint64
	// Throttled are requests turned away before they were measured.
	Throttled uint64
	// FirstNS and LastNS are CLOCK_BOOTTIME of the first and the last
	// request counted.
	FirstNS, LastNS uint64
	// Verdicts count Refused by signature verdict, ascending by verdict,
	// without zero counts; they add up to Refused.
	Verdicts []VerdictCount
}

// VerdictCount is a number of refusals with one signature verdict.
type VerdictCount struct {
	Verdict cms.Verdict
	Count   uint64
}

// MaxRefusalRequesters bounds the entries of one Refusals record; the
// agent writes more records for more.
const MaxRefusalRequesters = 1024

// maxVerdict is the largest cms.Verdict (BADSIG).
const maxVerdict = cms.VerdictBadSig

var refusalsMagic = [4]byte{'B', 'P', 'F', 'S'}

const (
	tagRFRequesters = 1

	tagRCUID       = 1
	tagRCGID       = 2
	tagRCRefused   = 3
	tagRCThrottled = 4
	tagRCFirst     = 5
	tagRCLast      = 6
	tagRCVerdicts  = 7
)

// check reports whether c can be encoded canonically.
func (c *RefusalCount) check() error {
	if c.Refused == 0 && c.Throttled == 0 {
		return fmt.Errorf("nothing counted")
	}
	if c.FirstNS > c.LastNS {
		return fmt.Errorf("first request at %d ns, after the last at %d ns", c.FirstNS, c.LastNS)
	}
	var sum uint64
	for i, v := range c.Verdicts {
		switch {
		case v.Verdict > maxVerdict:
			return fmt.Errorf("verdict %d", v.Verdict)
		case v.Count == 0:
			return fmt.Errorf("verdict %v counted zero times", v.Verdict)
		case i > 0 && v.Verdict <= c.Verdicts[i-1].Verdict:
			return fmt.Errorf("verdict %v out of order", v.Verdict)
		case sum+v.Count < sum:
			return fmt.Errorf("verdict counts overflow")
		}
		sum += v.Count
	}
	if sum != c.Refused {
		return fmt.Errorf("verdicts add up to %d, refused %d", sum, c.Refused)
	}
	return nil
}

// MarshalBinary returns the canonical encoding.
func (r *Refusals) MarshalBinary() ([]byte, error) {
	if n := len(r.Requesters); n == 0 || n > MaxRefusalRequesters {
		return nil, fmt.Errorf("refusals: %d requesters, want 1 to %d", n, MaxRefusalRequesters)
	}
	var list []byte
	for i := range r.Requesters {
		c := &r.Requesters[i]
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("refusals: uid %d gid %d: %w", c.UID, c.GID, err)
		}
		if i > 0 && cmpRequester(&r.Requesters[i-1], c) >= 0 {
			return nil, fmt.Errorf("refusals: uid %d gid %d out of order", c.UID, c.GID)
		}
		e := tlvWriter{lastTag: -1}
		e.u32(tagRCUID, c.UID)
		e.u32(tagRCGID, c.GID)
		if c.Refused != 0 {
			e.u64(tagRCRefused, c.Refused)
		}
		if c.Throttled != 0 {
			e.u64(tagRCThrottled, c.Throttled)
		}
		e.u64(tagRCFirst, c.FirstNS)
		e.u64(tagRCLast, c.LastNS)
		if len(c.Verdicts) > 0 {
			var vs []byte
			for _, v := range c.Verdicts {
				vs = append(vs, uint8(v.Verdict))
				vs = binary.BigEndian.AppendUint64(vs, v.Count)
			}
			e.field(tagRCVerdicts, vs)
		}
		list = binary.BigEndian.AppendUint32(list, uint32(len(e.buf)))
		list = append(list, e.buf...)
	}
	w := envelope(refusalsMagic)
	w.field(tagRFRequesters, list)
	return w.buf, nil
}

func cmpRequester(a, b *RefusalCount) int {
	return cmp.Or(cmp.Compare(a.UID, b.UID), cmp.Compare(a.GID, b.GID))
}

// ParseRefusals decodes a "refusals counted" record strictly: every rule
// MarshalBinary follows is checked, so one count has one encoding.
func ParseRefusals(b []byte) (*Refusals, error) {
	const what = "refusals"
	fields, err := openEnvelope(b, refusalsMagic, what)
	if err != nil {
		return nil, err
	}
	if fields.count() != 1 || fields.first().tag != tagRFRequesters {
		return nil, fmt.Errorf("%w: %s: want exactly the requester list", ErrMalformed, what)
	}
	r := &Refusals{}
	list := fields.first().val
	for off := 0; off < len(list); {
		if len(r.Requesters) >= MaxRefusalRequesters {
			return nil, fmt.Errorf("%w: %s: more than %d requesters", ErrMalformed, what, MaxRefusalRequesters)
		}
		where := fmt.Sprintf("refusals requester %d", len(r.Requesters))
		if len(list)-off < 4 {
			return nil, fmt.Errorf("%w: %s: truncated length at offset %d", ErrMalformed, where, off)
		}
		n := binary.BigEndian.Uint32(list[off:])
		if int64(n) > int64(len(list)-off-4) {
			return nil, fmt.Errorf("%w: %s: length %d exceeds the %d bytes left", ErrMalformed, where, n, len(list)-off-4)
		}
		c, err := decodeRefusalCount(list[off+4:off+4+int(n)], where)
		if err != nil {
			return nil, err
		}
		if k := len(r.Requesters); k > 0 && cmpRequester(&r.Requesters[k-1], &c) >= 0 {
			return nil, fmt.Errorf("%w: %s: uid %d gid %d out of order", ErrMalformed, where, c.UID, c.GID)
		}
		r.Requesters = append(r.Requesters, c)
		off += 4 + int(n)
	}
	if len(r.Requesters) == 0 {
		return nil, fmt.Errorf("%w: %s: empty list", ErrMalformed, what)
	}
	return r, nil
}

func decodeRefusalCount(b []byte, where string) (RefusalCount, error) {
	var c RefusalCount
	fields, err := splitTLV(b, where)
	if err != nil {
		return c, err
	}
	u64 := func(f tlvField) (uint64, error) {
		if err := fixedLen(f, 8, where); err != nil {
			return 0, err
		}
		return binary.BigEndian.Uint64(f.val), nil
	}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagRCUID:
			c.UID, err = u32Field(f, where)
			req++
		case tagRCGID:
			c.GID, err = u32Field(f, where)
			req++
		case tagRCRefused:
			if c.Refused, err = u64(f); err == nil && c.Refused == 0 {
				err = fmt.Errorf("%w: %s: refused is present but zero", ErrMalformed, where)
			}
		case tagRCThrottled:
			if c.Throttled, err = u64(f); err == nil && c.Throttled == 0 {
				err = fmt.Errorf("%w: %s: throttled is present but zero", ErrMalformed, where)
			}
		case tagRCFirst:
			c.FirstNS, err = u64(f)
			req++
		case tagRCLast:
			c.LastNS, err = u64(f)
			req++
		case tagRCVerdicts:
			c.Verdicts, err = decodeVerdictCounts(f, where)
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
		if err != nil {
			return c, err
		}
	}
	if req != 4 {
		return c, fmt.Errorf("%w: %s: uid, gid, first and last are required", ErrMalformed, where)
	}
	if err := c.check(); err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrMalformed, where, err)
	}
	return c, nil
}

// decodeVerdictCounts reads the verdict list: 9 bytes an entry, the
// verdict then its count.
func decodeVerdictCounts(f tlvField, where string) ([]VerdictCount, error) {
	if len(f.val) == 0 || len(f.val)%9 != 0 || len(f.val)/9 > int(maxVerdict)+1 {
		return nil, fmt.Errorf("%w: %s: verdict list of %d bytes", ErrMalformed, where, len(f.val))
	}
	out := make([]VerdictCount, 0, len(f.val)/9)
	for e := range slices.Chunk(f.val, 9) {
		out = append(out, VerdictCount{Verdict: cms.Verdict(e[0]), Count: binary.BigEndian.Uint64(e[1:])})
	}
	return out, nil
}

// Total is the number of requests r counts.
func (r *Refusals) Total() (refused, throttled uint64) {
	for _, c := range r.Requesters {
		refused += c.Refused
		throttled += c.Throttled
	}
	return refused, throttled
}
