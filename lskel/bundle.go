package lskel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// The bundle is this project's one-file container for a light skeleton. The
// byte-level format is specified in docs/bundle-format.md; in short:
//
//	header:  magic "\x89BPFLSK\n" (8) | version u16 | reserved u16 (0)
//	records: type u16 | length u32 | value[length]   (little-endian)
//
// Records appear in strictly ascending type order, each type at most once,
// and the last record is the end record (type 0xffff, length 0). A type with
// bit 15 set is critical: a reader that does not know it must refuse the
// bundle. Unknown non-critical records are kept verbatim in
// Artifact.Extensions. There is exactly one encoding of every artifact, so
// MarshalBundle(ParseBundle(x)) == x for every accepted x.

var bundleMagic = [8]byte{0x89, 'B', 'P', 'F', 'L', 'S', 'K', '\n'}

const (
	// BundleVersion is the only bundle version this package reads and writes.
	BundleVersion = 1

	bundleHeaderSize = 12
	recordHeaderSize = 6

	// MaxBundleSize bounds the whole bundle.
	MaxBundleSize = 48 << 20
)

// Record types (docs/bundle-format.md).
const (
	recCerts     uint16 = 0x0007
	recGlobals   uint16 = 0x0008
	recName      uint16 = 0x8001
	recInsns     uint16 = 0x8002
	recData      uint16 = 0x8003
	recSignature uint16 = 0x8004
	recExclHash  uint16 = 0x8005
	recKeyring   uint16 = 0x8006
	recEnd       uint16 = 0xffff

	criticalBit uint16 = 0x8000
)

func recordName(t uint16) string {
	switch t {
	case recCerts:
		return "certs"
	case recGlobals:
		return "globals"
	case recName:
		return "name"
	case recInsns:
		return "insns"
	case recData:
		return "data"
	case recSignature:
		return "signature"
	case recExclHash:
		return "excl_hash"
	case recKeyring:
		return "keyring_id"
	case recEnd:
		return "end"
	}
	return "unknown"
}

func bundleErr(off int, t uint16, err error) error {
	return &FormatError{
		Part:  "bundle",
		Where: fmt.Sprintf("offset %d", off),
		Field: fmt.Sprintf("record %#04x (%s)", t, recordName(t)),
		Err:   err,
	}
}

// ParseBundle reads a bundle strictly: wrong magic or version, unknown
// critical records, duplicate or out-of-order records, oversize fields,
// missing required records, bytes after the end record and truncation are
// all errors. The returned slices alias src.
func ParseBundle(src []byte) (*Artifact, error) {
	if len(src) > MaxBundleSize {
		return nil, &FormatError{Part: "bundle", Err: tooLarge(len(src), MaxBundleSize)}
	}
	if len(src) < bundleHeaderSize {
		return nil, &FormatError{Part: "bundle", Where: "offset 0", Field: "header", Err: fmt.Errorf("%d bytes, want at least %d", len(src), bundleHeaderSize)}
	}
	if [8]byte(src[:8]) != bundleMagic {
		return nil, &FormatError{Part: "bundle", Where: "offset 0", Field: "magic", Err: fmt.Errorf("% x: %w", src[:8], ErrUnknownFormat)}
	}
	if v := binary.LittleEndian.Uint16(src[8:]); v != BundleVersion {
		return nil, &FormatError{Part: "bundle", Where: "offset 8", Field: "version", Err: fmt.Errorf("version %d, want %d", v, BundleVersion)}
	}
	if r := binary.LittleEndian.Uint16(src[10:]); r != 0 {
		return nil, &FormatError{Part: "bundle", Where: "offset 10", Field: "reserved", Err: fmt.Errorf("%#04x, want 0", r)}
	}
	a := &Artifact{Source: FormatBundle}
	seen := map[uint16]bool{}
	var last uint16
	off := bundleHeaderSize
	for {
		if len(src)-off < recordHeaderSize {
			return nil, &FormatError{Part: "bundle", Where: fmt.Sprintf("offset %d", off), Err: errors.New("truncated: no end record")}
		}
		t := binary.LittleEndian.Uint16(src[off:])
		n := binary.LittleEndian.Uint32(src[off+2:])
		if seen[t] {
			return nil, bundleErr(off, t, errors.New("duplicate record"))
		}
		if len(seen) > 0 && t < last {
			return nil, bundleErr(off, t, fmt.Errorf("out of order after %#04x", last))
		}
		if uint64(n) > uint64(len(src)-off-recordHeaderSize) {
			return nil, bundleErr(off, t, fmt.Errorf("length %d runs past the end of the bundle", n))
		}
		seen[t], last = true, t
		v := src[off+recordHeaderSize : off+recordHeaderSize+int(n)]
		if t == recEnd {
			if n != 0 {
				return nil, bundleErr(off, t, fmt.Errorf("length %d, want 0", n))
			}
			if end := off + recordHeaderSize; end != len(src) {
				return nil, &FormatError{Part: "bundle", Where: fmt.Sprintf("offset %d", end), Err: fmt.Errorf("%d trailing bytes after the end record", len(src)-end)}
			}
			break
		}
		if err := a.setRecord(t, v); err != nil {
			return nil, bundleErr(off, t, err)
		}
		off += recordHeaderSize + int(n)
	}
	for _, t := range []uint16{recName, recInsns, recData, recKeyring} {
		if !seen[t] {
			return nil, bundleErr(len(src), t, errors.New("required record missing"))
		}
	}
	if err := a.validate(); err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Part = "bundle"
		}
		return nil, err
	}
	return a, nil
}

func (a *Artifact) setRecord(t uint16, v []byte) error {
	switch t {
	case recName:
		if len(v) > MaxNameSize {
			return tooLarge(len(v), MaxNameSize)
		}
		a.Name = string(v)
	case recInsns:
		if len(v) > MaxInsnsSize {
			return tooLarge(len(v), MaxInsnsSize)
		}
		a.Insns = v
	case recData:
		if len(v) > MaxDataSize {
			return tooLarge(len(v), MaxDataSize)
		}
		a.Data = v
	case recSignature:
		if len(v) == 0 {
			return errors.New("empty signature (omit the record instead)")
		}
		if len(v) > MaxSignatureSize {
			return tooLarge(len(v), MaxSignatureSize)
		}
		a.Signature = v
	case recExclHash:
		if len(v) != ExclHashSize {
			return fmt.Errorf("length %d, want %d", len(v), ExclHashSize)
		}
		a.ExclHash = v
	case recKeyring:
		if len(v) != 4 {
			return fmt.Errorf("length %d, want 4", len(v))
		}
		a.KeyringID = int32(binary.LittleEndian.Uint32(v))
	case recCerts:
		certs, err := parseCerts(v)
		if err != nil {
			return err
		}
		a.Certs = certs
	case recGlobals:
		globals, err := parseGlobals(v)
		if err != nil {
			return err
		}
		a.Globals = globals
	default:
		if t == 0 {
			return errors.New("reserved record type 0")
		}
		if t&criticalBit != 0 {
			return errors.New("unknown critical record")
		}
		if len(a.Extensions) >= MaxExtensions {
			return fmt.Errorf("more than %d unknown records: %w", MaxExtensions, ErrTooLarge)
		}
		if len(v) > MaxExtensionSize {
			return tooLarge(len(v), MaxExtensionSize)
		}
		a.Extensions = append(a.Extensions, Extension{Type: t, Value: v})
	}
	return nil
}

// parseCerts reads repeated {u32 length, DER}; at least one.
func parseCerts(v []byte) ([][]byte, error) {
	var certs [][]byte
	for off := 0; off < len(v); {
		if len(certs) == MaxCerts {
			return nil, fmt.Errorf("more than %d certificates: %w", MaxCerts, ErrTooLarge)
		}
		if len(v)-off < 4 {
			return nil, fmt.Errorf("value offset %d: truncated certificate length", off)
		}
		n := binary.LittleEndian.Uint32(v[off:])
		off += 4
		if uint64(n) > uint64(len(v)-off) {
			return nil, fmt.Errorf("value offset %d: certificate length %d runs past the record", off-4, n)
		}
		c := v[off : off+int(n)]
		if err := checkDERCert(c); err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs), err)
		}
		certs = append(certs, c)
		off += int(n)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificates (omit the record instead)")
	}
	return certs, nil
}

// parseGlobals reads repeated {u16 name length, name, u32 data length,
// data}; at least one.
func parseGlobals(v []byte) ([]GlobalData, error) {
	var gs []GlobalData
	for off := 0; off < len(v); {
		if len(gs) == MaxGlobals {
			return nil, fmt.Errorf("more than %d arrays: %w", MaxGlobals, ErrTooLarge)
		}
		if len(v)-off < 2 {
			return nil, fmt.Errorf("value offset %d: truncated name length", off)
		}
		nn := int(binary.LittleEndian.Uint16(v[off:]))
		off += 2
		if nn > len(v)-off {
			return nil, fmt.Errorf("value offset %d: name length %d runs past the record", off-2, nn)
		}
		name := string(v[off : off+nn])
		off += nn
		if len(v)-off < 4 {
			return nil, fmt.Errorf("value offset %d: truncated data length", off)
		}
		dn := binary.LittleEndian.Uint32(v[off:])
		off += 4
		if uint64(dn) > uint64(len(v)-off) {
			return nil, fmt.Errorf("value offset %d: data length %d runs past the record", off-4, dn)
		}
		g := GlobalData{Name: name}
		if dn > 0 { // an empty array is nil, as ParseHeader returns it
			g.Data = v[off : off+int(dn)]
		}
		gs = append(gs, g)
		off += int(dn)
	}
	if len(gs) == 0 {
		return nil, errors.New("no arrays (omit the record instead)")
	}
	return gs, nil
}

// MarshalBundle encodes the artifact as a bundle. The encoding is
// deterministic and canonical: the same artifact always gives the same
// bytes, and ParseBundle accepts them. Source is not encoded. An artifact
// that breaks a limit is refused.
func (a *Artifact) MarshalBundle() ([]byte, error) {
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("bundle/marshal: %w", err)
	}
	type rec struct {
		t uint16
		v []byte
	}
	recs := []rec{
		{recName, []byte(a.Name)},
		{recInsns, a.Insns},
		{recData, a.Data},
		{recKeyring, binary.LittleEndian.AppendUint32(nil, uint32(a.KeyringID))},
	}
	if a.Signature != nil {
		recs = append(recs, rec{recSignature, a.Signature})
	}
	if a.ExclHash != nil {
		recs = append(recs, rec{recExclHash, a.ExclHash})
	}
	if len(a.Certs) > 0 {
		var v []byte
		for _, c := range a.Certs {
			v = binary.LittleEndian.AppendUint32(v, uint32(len(c)))
			v = append(v, c...)
		}
		recs = append(recs, rec{recCerts, v})
	}
	if len(a.Globals) > 0 {
		var v []byte
		for _, g := range a.Globals {
			v = binary.LittleEndian.AppendUint16(v, uint16(len(g.Name)))
			v = append(v, g.Name...)
			v = binary.LittleEndian.AppendUint32(v, uint32(len(g.Data)))
			v = append(v, g.Data...)
		}
		recs = append(recs, rec{recGlobals, v})
	}
	if len(a.Extensions) > MaxExtensions {
		return nil, fmt.Errorf("bundle/marshal: %d extensions: %w", len(a.Extensions), ErrTooLarge)
	}
	for _, e := range a.Extensions {
		if e.Type == 0 || e.Type&criticalBit != 0 || recordName(e.Type) != "unknown" {
			return nil, fmt.Errorf("bundle/marshal: extension type %#04x is not an unknown non-critical type", e.Type)
		}
		if len(e.Value) > MaxExtensionSize {
			return nil, fmt.Errorf("bundle/marshal: extension %#04x: %w", e.Type, tooLarge(len(e.Value), MaxExtensionSize))
		}
		recs = append(recs, rec{e.Type, e.Value})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].t < recs[j].t })
	size := bundleHeaderSize + recordHeaderSize
	for i, r := range recs {
		if i > 0 && recs[i-1].t == r.t {
			return nil, fmt.Errorf("bundle/marshal: duplicate record type %#04x", r.t)
		}
		size += recordHeaderSize + len(r.v)
	}
	if size > MaxBundleSize {
		return nil, fmt.Errorf("bundle/marshal: %w", tooLarge(size, MaxBundleSize))
	}
	out := make([]byte, 0, size)
	out = append(out, bundleMagic[:]...)
	out = binary.LittleEndian.AppendUint16(out, BundleVersion)
	out = binary.LittleEndian.AppendUint16(out, 0)
	for _, r := range append(recs, rec{t: recEnd}) {
		out = binary.LittleEndian.AppendUint16(out, r.t)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(r.v)))
		out = append(out, r.v...)
	}
	return out, nil
}
