package tpmtest

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// FirmwareLog is a TCG PC Client firmware event log as this package's own
// small reader sees it (TCG PC Client Platform Firmware Profile §10: SHA-1
// TCG_PCR_EVENT records, or a Spec ID event followed by crypto-agile
// TCG_PCR_EVENT2 records). It is deliberately independent of
// go-attestation, which the code under test uses: tests compute their
// expected values, and replay logs into TPMs, with it.
type FirmwareLog struct {
	// CryptoAgile is set when the log starts with a Spec ID event.
	CryptoAgile bool
	// Banks are the hash algorithms the log carries, ascending.
	Banks []crypto.Hash
	// Events are all events in log order, the Spec ID event included.
	Events []FirmwareEvent
}

// FirmwareEvent is one event of a FirmwareLog.
type FirmwareEvent struct {
	// Offset and End delimit the whole event in the log's bytes;
	// DataOffset is where its data starts.
	Offset, DataOffset, End int
	PCR                     uint32
	Type                    uint32
	Digests                 map[crypto.Hash][]byte
	Data                    []byte
}

// Firmware event types the helpers need (PFP §10.4.1).
const (
	EVNoAction                = 0x00000003
	EVIPL                     = 0x0000000d
	EVEFIVariableDriverConfig = 0x80000001
	EVEFIBootServicesApp      = 0x80000003
)

// ErrFirmwareLog is wrapped by every ParseFirmwareLog error.
var ErrFirmwareLog = errors.New("firmware log")

// algHashes maps TPM algorithm ids (TPM 2.0 Part 2 §6.3) to hashes.
func algHash(id uint16) (crypto.Hash, bool) {
	switch id {
	case 0x0004:
		return crypto.SHA1, true
	case 0x000b:
		return crypto.SHA256, true
	case 0x000c:
		return crypto.SHA384, true
	case 0x000d:
		return crypto.SHA512, true
	}
	return 0, false
}

// logReader reads little-endian fields, remembering the first error.
type logReader struct {
	b   []byte
	off int
	err error
}

func (r *logReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("%w: offset %d: %s of %d bytes, %d left", ErrFirmwareLog, r.off, what, n, len(r.b)-r.off)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *logReader) u8(what string) uint8 {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *logReader) u16(what string) uint16 {
	if b := r.take(2, what); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *logReader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// ParseFirmwareLog reads a TCG PC Client firmware event log.
func ParseFirmwareLog(b []byte) (*FirmwareLog, error) {
	r := &logReader{b: b}
	l := &FirmwareLog{}
	sizes := map[uint16]int{}
	first := true
	for r.off < len(b) {
		e := FirmwareEvent{Offset: r.off, Digests: map[crypto.Hash][]byte{}}
		e.PCR = r.u32("pcr index")
		e.Type = r.u32("event type")
		if first || !l.CryptoAgile {
			e.Digests[crypto.SHA1] = r.take(20, "sha1 digest")
		} else {
			n := r.u32("digest count")
			if n > uint32(len(sizes)) {
				return nil, fmt.Errorf("%w: offset %d: %d digests, the log declares %d algorithms", ErrFirmwareLog, e.Offset, n, len(sizes))
			}
			for range n {
				id := r.u16("algorithm id")
				size, ok := sizes[id]
				if r.err == nil && !ok {
					return nil, fmt.Errorf("%w: offset %d: digest of undeclared algorithm %#x", ErrFirmwareLog, e.Offset, id)
				}
				d := r.take(size, "digest")
				if h, known := algHash(id); known && d != nil {
					e.Digests[h] = d
				}
			}
		}
		size := r.u32("event size")
		e.DataOffset = r.off
		e.Data = r.take(int(size), "event data")
		if r.err != nil {
			return nil, r.err
		}
		e.End = r.off
		if first {
			first = false
			if e.Type == EVNoAction && bytes.HasPrefix(e.Data, []byte("Spec ID Event03\x00")) {
				var err error
				if sizes, err = specID(e.Data); err != nil {
					return nil, fmt.Errorf("%w: spec id event: %w", ErrFirmwareLog, err)
				}
				l.CryptoAgile = true
			}
		}
		l.Events = append(l.Events, e)
	}
	if len(l.Events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrFirmwareLog)
	}
	if !l.CryptoAgile {
		l.Banks = []crypto.Hash{crypto.SHA1}
		return l, nil
	}
	for id := range sizes {
		if h, ok := algHash(id); ok {
			l.Banks = append(l.Banks, h)
		}
	}
	slices.Sort(l.Banks)
	return l, nil
}

// specID reads a TCG_EfiSpecIDEvent (PFP §10.4.5.1) and returns its digest
// sizes by algorithm id.
func specID(b []byte) (map[uint16]int, error) {
	r := &logReader{b: b}
	r.take(16, "signature")
	r.u32("platform class")
	r.take(4, "version, errata, uintn size")
	n := r.u32("number of algorithms")
	if r.err == nil && n > uint32(len(b)) {
		return nil, fmt.Errorf("%d algorithms", n)
	}
	sizes := map[uint16]int{}
	for range n {
		id, size := r.u16("algorithm id"), r.u16("digest size")
		if h, ok := algHash(id); ok && int(size) != h.Size() {
			return nil, fmt.Errorf("algorithm %#x with %d-byte digests", id, size)
		}
		sizes[id] = int(size)
	}
	vendor := r.u8("vendor info size")
	r.take(int(vendor), "vendor info")
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%d bytes after the vendor info", len(b)-r.off)
	}
	return sizes, nil
}

// StartupLocality returns the locality of the log's StartupLocality
// EV_NO_ACTION event (PFP §10.4.5.3), or 0.
func (l *FirmwareLog) StartupLocality() byte {
	for _, e := range l.Events {
		if e.PCR == 0 && e.Type == EVNoAction && len(e.Data) == 17 && bytes.HasPrefix(e.Data, []byte("StartupLocality\x00")) {
			return e.Data[16]
		}
	}
	return 0
}

// Measured returns the events that extend pcr (all but EV_NO_ACTION), in
// order.
func (l *FirmwareLog) Measured(pcr int) []FirmwareEvent {
	var out []FirmwareEvent
	for _, e := range l.Events {
		if int64(e.PCR) == int64(pcr) && e.Type != EVNoAction {
			out = append(out, e)
		}
	}
	return out
}

// Replay folds pcr's events of bank h from the PCR's reset value, as a TPM
// does: v = H(v ‖ digest).
func (l *FirmwareLog) Replay(pcr int, h crypto.Hash) []byte {
	v := make([]byte, h.Size())
	if pcr >= 17 && pcr <= 22 {
		for i := range v {
			v[i] = 0xff
		}
	}
	if pcr == 0 {
		v[len(v)-1] = l.StartupLocality()
	}
	for _, e := range l.Measured(pcr) {
		d := h.New()
		d.Write(v)
		d.Write(e.Digests[h])
		v = d.Sum(nil)
	}
	return v
}

// ReplayFirmwareLog extends every measured event of a real firmware log
// into the TPM's PCRs, in log order, each with one TPM2_PCR_Extend carrying
// the event's digest in every bank the log has (and only those: a bank the
// TPM has but the log lacks keeps its reset value). It fails the test when
// the TPM cannot reproduce the log (a bank it has not allocated, a
// dynamic-launch PCR, a startup locality other than 0, an event without a
// bank's digest), and afterwards checks every PCR the log touches against
// the log's own replay, so the TPM and the reader agree. The TPM's PCRs
// must be at their reset values.
func ReplayFirmwareLog(tb testing.TB, d *tpm.Device, log []byte) *FirmwareLog {
	tb.Helper()
	l, err := ParseFirmwareLog(log)
	if err != nil {
		tb.Fatalf("replay firmware log: %v", err)
	}
	if loc := l.StartupLocality(); loc != 0 {
		tb.Fatalf("replay firmware log: TPM2_Startup at locality %d cannot be reproduced", loc)
	}
	for _, h := range l.Banks {
		if !slices.Contains(d.Banks(), h) {
			tb.Fatalf("replay firmware log: the log has bank %v, the TPM only %v", h, d.Banks())
		}
	}
	touched := map[int]bool{}
	for n, e := range l.Events {
		if e.Type == EVNoAction {
			continue
		}
		if e.PCR >= 17 && e.PCR <= 22 {
			tb.Fatalf("replay firmware log: event %d extends dynamic-launch pcr %d, which cannot be reproduced", n, e.PCR)
		}
		digests := map[crypto.Hash][]byte{}
		for _, h := range l.Banks {
			dg := e.Digests[h]
			if len(dg) != h.Size() {
				tb.Fatalf("replay firmware log: event %d has no %v digest", n, h)
			}
			digests[h] = dg
		}
		if err := d.ExtendBanks(int(e.PCR), digests); err != nil {
			tb.Fatalf("replay firmware log: event %d: %v", n, err)
		}
		touched[int(e.PCR)] = true
	}
	for pcr := range touched {
		got, err := d.ReadPCR(pcr)
		if err != nil {
			tb.Fatalf("replay firmware log: %v", err)
		}
		for _, h := range l.Banks {
			if want := l.Replay(pcr, h); !bytes.Equal(got[h], want) {
				tb.Fatalf("replay firmware log: pcr %d %v is %x after the replay, the log folds to %x", pcr, h, got[h], want)
			}
		}
	}
	return l
}
