package measure

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// MeasurementVersion is the version of the canonical encoding written by
// Measurement.MarshalBinary. Version 2 added each program's kernel tag (or
// why it cannot be known before the load); a parser reads versions 1 and 2
// and refuses any other.
const MeasurementVersion = 2

// measurementMagic starts every encoded measurement.
var measurementMagic = [4]byte{'B', 'P', 'F', 'M'}

// Scheme says how an artifact is signed.
type Scheme uint8

// Schemes. The numeric values are part of the canonical encoding.
const (
	SchemeUnsigned Scheme = 1 // no signature
	SchemeKernel   Scheme = 2 // Linux 6.18: CMS over the loader insns; data bound by the loader's hash check
	SchemeHornet   Scheme = 3 // Hornet: CMS over the loader insns with the map hashes as a signed attribute
)

func (s Scheme) String() string {
	switch s {
	case SchemeUnsigned:
		return "unsigned"
	case SchemeKernel:
		return "kernel-lskel"
	case SchemeHornet:
		return "hornet"
	}
	return fmt.Sprintf("scheme(%d)", uint8(s))
}

// MarshalText renders the scheme by name.
func (s Scheme) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Link is the state of one link of the hash chain that carries the
// signature over the loader to the data map and the programs inside it.
type Link uint8

// Link states. The numeric values are part of the canonical encoding.
const (
	LinkAbsent      Link = 1 // the artifact carries nothing to check (unsigned)
	LinkHolds       Link = 2 // checked here and it holds
	LinkBroken      Link = 3 // checked here and it does not hold: the kernel or the loader will refuse, or Hornet reports UNEXPECTED
	LinkKernelBound Link = 4 // bound by the kernel at load time, not by anything the artifact carries
)

func (l Link) String() string {
	switch l {
	case LinkAbsent:
		return "absent"
	case LinkHolds:
		return "holds"
	case LinkBroken:
		return "BROKEN"
	case LinkKernelBound:
		return "kernel-bound"
	}
	return fmt.Sprintf("link(%d)", uint8(l))
}

// MarshalText renders the link state by name.
func (l Link) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// DataLinkBasis says, in words, what DataLink is the state of. It follows
// from fields of the measurement: a loader that carries a data hash is
// bound by it; a Hornet signature over a loader without one, by the signed
// map hash of fd_array index 0 (the data map); a kernel-bound link by the
// kernel at load time.
func (m *Measurement) DataLinkBasis() string {
	switch {
	case len(m.EmbeddedDataHash) > 0:
		return "loader's data hash = data map hash"
	case m.Scheme == SchemeHornet:
		return "Hornet signed map hash (fd_array 0) = data map hash"
	case m.DataLink == LinkKernelBound:
		return "data map bound by the kernel at load"
	}
	return "loader's data hash = data map hash"
}

// KernelCheck records whether the kernel itself verified the signature when
// the artifact was loaded. Inspect sets it from Load.KernelVerifies; a
// measurement made outside a load leaves it Unknown.
type KernelCheck uint8

// KernelCheck values. The numeric values are part of the canonical encoding.
const (
	KernelCheckUnknown      KernelCheck = 0 // not loaded by an agent (inspect)
	KernelCheckUnavailable  KernelCheck = 1 // the kernel cannot verify signatures; loaded without one
	KernelCheckVerified     KernelCheck = 2 // the signature was passed to and checked by the kernel
	KernelCheckNotSubmitted KernelCheck = 3 // unsigned artifact: nothing to submit
)

func (k KernelCheck) String() string {
	switch k {
	case KernelCheckUnknown:
		return "unknown"
	case KernelCheckUnavailable:
		return "unavailable"
	case KernelCheckVerified:
		return "verified"
	case KernelCheckNotSubmitted:
		return "not-submitted"
	}
	return fmt.Sprintf("kernel-check(%d)", uint8(k))
}

// MarshalText renders the value by name.
func (k KernelCheck) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// ProgramDigest identifies one original program carried in the data blob.
type ProgramDigest struct {
	Name               string
	Type               uint32 // enum bpf_prog_type
	ExpectedAttachType uint32 // enum bpf_attach_type
	InsnCount          uint32
	Digest             [32]byte // SHA-256 of the instruction bytes as carried in the blob
	License            string
	// KernelTag is the tag the kernel will report for the program
	// (bpf_prog_info.tag), computed from the instructions as the loader
	// submits them (lskel.KernelTag); zero when TagUnpredictable says why
	// the blob does not determine it. A version 1 measurement has
	// neither.
	KernelTag        [8]byte
	TagUnpredictable string
}

// TagNotMeasured is a version 1 measurement's TagUnpredictable: that
// format did not record the kernel tag.
const TagNotMeasured = "not measured (measurement format version 1)"

// TagKnown reports whether the measurement determines the program's kernel
// tag.
func (p *ProgramDigest) TagKnown() bool { return p.TagUnpredictable == "" && p.KernelTag != [8]byte{} }

// Signer identifies who signed, as far as the artifact and the trust store say.
type Signer struct {
	CertSHA256 []byte // SHA-256 of the trusted certificate's DER; empty if no certificate matched
	Subject    string // subject of that certificate
	ID         string // signer identifier from the CMS: "skid:<hex>" or "issuer+serial:<...>"
	KeyID      []byte // subject key identifier of the matched certificate
}

// Name names the signer for people: the certificate subject, or the CMS
// signer identifier when no trusted certificate matched; "" for no signer.
func (s *Signer) Name() string {
	switch {
	case s == nil:
		return ""
	case s.Subject != "":
		return s.Subject
	}
	return s.ID
}

func (s *Signer) empty() bool {
	return len(s.CertSHA256) == 0 && s.Subject == "" && s.ID == "" && len(s.KeyID) == 0
}

// Requester says who asked the agent for the load (Load.Requester).
type Requester struct {
	UID, GID, PID uint32
	Exe           string
	ExeSHA256     []byte
}

// Measurement is what bpfattest records about one load request, before the
// loader runs. Its canonical encoding (MarshalBinary) is the content of the
// event log record whose digests are extended into the PCR, so every field a
// verifier's policy relies on is inside it.
type Measurement struct {
	Scheme     Scheme
	Name       string
	Generation lskel.Generation

	LoaderSHA256     [32]byte // SHA-256 of the loader instructions (= excl_prog_hash of a correct artifact)
	DataSHA256       [32]byte // the kernel's hash of the frozen data map
	EmbeddedDataHash []byte   // the data hash the loader carries, if any
	ExclHash         []byte   // excl_prog_hash carried by the artifact, if any
	SignatureSHA256  []byte   // SHA-256 of the signature bytes, if signed

	ExclLink Link // excl hash = SHA-256(insns)
	// DataLink binds the data map to what is signed: the embedded data
	// hash = the kernel's map hash; for a Hornet signature over a loader
	// without one, the signed map hash of fd_array index 0 = the kernel's
	// map hash (DataLinkBasis tells which).
	DataLink Link

	// HostOverrides is true when the loader takes map sizes or global-data
	// initial values from the host at run time, outside anything signed.
	HostOverrides bool

	Verdict     cms.Verdict
	KernelCheck KernelCheck
	KeyringID   int32
	Signer      *Signer

	Programs []ProgramDigest

	// Set for a load (Options.Load).
	LoaderContextSHA256 []byte // SHA-256 of the context handed to the loader
	Requester           *Requester
	BootTimeNS          uint64 // CLOCK_BOOTTIME of the request
}

// Field tags of the canonical encoding (docs/measurement-format.md).
const (
	tagScheme           = 1
	tagName             = 2
	tagGeneration       = 3
	tagLoaderSHA256     = 4
	tagDataSHA256       = 5
	tagEmbeddedDataHash = 6
	tagExclHash         = 7
	tagSignatureSHA256  = 8
	tagExclLink         = 9
	tagDataLink         = 10
	tagHostOverrides    = 11
	tagVerdict          = 12
	tagKernelCheck      = 13
	tagKeyringID        = 14
	tagSigner           = 15
	tagPrograms         = 16
	tagLoaderContext    = 17
	tagRequester        = 18
	tagBootTime         = 19

	tagProgName       = 1
	tagProgType       = 2
	tagProgAttachType = 3
	tagProgInsnCount  = 4
	tagProgDigest     = 5
	tagProgLicense    = 6
	tagProgKernelTag  = 7
	tagProgTagUnknown = 8

	tagSignerCert    = 1
	tagSignerSubject = 2
	tagSignerID      = 3
	tagSignerKeyID   = 4

	tagReqUID       = 1
	tagReqGID       = 2
	tagReqPID       = 3
	tagReqExe       = 4
	tagReqExeSHA256 = 5
)

// MarshalBinary returns the canonical encoding: equal measurements give equal
// bytes on every machine.
func (m *Measurement) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	w := tlvWriter{lastTag: -1, buf: make([]byte, 0, 1024+256*len(m.Programs))}
	w.buf = append(w.buf, measurementMagic[:]...)
	w.buf = binary.BigEndian.AppendUint16(w.buf, MeasurementVersion)
	w.u8(tagScheme, uint8(m.Scheme))
	w.str(tagName, m.Name)
	w.u8(tagGeneration, uint8(m.Generation))
	w.field(tagLoaderSHA256, m.LoaderSHA256[:])
	w.field(tagDataSHA256, m.DataSHA256[:])
	w.optBytes(tagEmbeddedDataHash, m.EmbeddedDataHash)
	w.optBytes(tagExclHash, m.ExclHash)
	w.optBytes(tagSignatureSHA256, m.SignatureSHA256)
	w.u8(tagExclLink, uint8(m.ExclLink))
	w.u8(tagDataLink, uint8(m.DataLink))
	w.u8(tagHostOverrides, boolByte(m.HostOverrides))
	w.u8(tagVerdict, uint8(m.Verdict))
	w.u8(tagKernelCheck, uint8(m.KernelCheck))
	w.u32(tagKeyringID, uint32(m.KeyringID))
	if m.Signer != nil {
		s := tlvWriter{lastTag: -1}
		s.optBytes(tagSignerCert, m.Signer.CertSHA256)
		s.optStr(tagSignerSubject, m.Signer.Subject)
		s.optStr(tagSignerID, m.Signer.ID)
		s.optBytes(tagSignerKeyID, m.Signer.KeyID)
		w.field(tagSigner, s.buf)
	}
	var progs []byte
	for i := range m.Programs {
		p := &m.Programs[i]
		e := tlvWriter{lastTag: -1}
		e.str(tagProgName, p.Name)
		e.u32(tagProgType, p.Type)
		e.u32(tagProgAttachType, p.ExpectedAttachType)
		e.u32(tagProgInsnCount, p.InsnCount)
		e.field(tagProgDigest, p.Digest[:])
		e.optStr(tagProgLicense, p.License)
		switch {
		case p.TagUnpredictable == "":
			e.field(tagProgKernelTag, p.KernelTag[:])
		default:
			e.str(tagProgTagUnknown, p.TagUnpredictable)
		}
		progs = binary.BigEndian.AppendUint32(progs, uint32(len(e.buf)))
		progs = append(progs, e.buf...)
	}
	w.field(tagPrograms, progs)
	w.optBytes(tagLoaderContext, m.LoaderContextSHA256)
	if r := m.Requester; r != nil {
		e := tlvWriter{lastTag: -1}
		e.u32(tagReqUID, r.UID)
		e.u32(tagReqGID, r.GID)
		e.u32(tagReqPID, r.PID)
		e.optStr(tagReqExe, r.Exe)
		e.optBytes(tagReqExeSHA256, r.ExeSHA256)
		w.field(tagRequester, e.buf)
	}
	if m.BootTimeNS != 0 {
		w.u64(tagBootTime, m.BootTimeNS)
	}
	return w.buf, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// validate checks the invariants the encoding relies on, so that
// ParseMeasurement(MarshalBinary(m)) == m for every m MarshalBinary accepts.
func (m *Measurement) validate() error {
	for _, h := range []struct {
		name string
		b    []byte
	}{
		{"embedded data hash", m.EmbeddedDataHash},
		{"excl hash", m.ExclHash},
		{"signature digest", m.SignatureSHA256},
		{"loader context digest", m.LoaderContextSHA256},
	} {
		if len(h.b) != 0 && len(h.b) != sha256.Size {
			return fmt.Errorf("measurement: %s is %d bytes, want %d", h.name, len(h.b), sha256.Size)
		}
	}
	if m.Requester != nil && len(m.Requester.ExeSHA256) != 0 && len(m.Requester.ExeSHA256) != sha256.Size {
		return fmt.Errorf("measurement: requester executable digest is %d bytes, want %d", len(m.Requester.ExeSHA256), sha256.Size)
	}
	if m.Signer != nil && len(m.Signer.CertSHA256) != 0 && len(m.Signer.CertSHA256) != sha256.Size {
		return fmt.Errorf("measurement: signer certificate digest is %d bytes, want %d", len(m.Signer.CertSHA256), sha256.Size)
	}
	if m.Signer != nil && m.Signer.empty() {
		return fmt.Errorf("measurement: signer is present but empty")
	}
	return nil
}

// ParseMeasurement decodes the canonical encoding strictly: wrong magic or
// version, unknown, duplicate or out-of-order fields, bad lengths and
// trailing bytes are all errors. It never panics.
//
// The measurement and what it points to (signer, requester, first
// program) are one allocation, its strings a second and its variable
// byte fields (digests, key identifier) a third: a verifier keeps one
// parsed measurement per live record. The result shares no memory with
// b.
func ParseMeasurement(b []byte) (*Measurement, error) {
	if len(b) < 6 || !bytes.Equal(b[:4], measurementMagic[:]) {
		return nil, fmt.Errorf("%w: missing %q magic", ErrMalformed, measurementMagic[:])
	}
	version := binary.BigEndian.Uint16(b[4:6])
	if version != 1 && version != MeasurementVersion {
		return nil, fmt.Errorf("%w: version %d, this reader knows 1 and %d", ErrMalformed, version, MeasurementVersion)
	}
	fields, err := splitTLV(b[6:], "measurement")
	if err != nil {
		return nil, err
	}
	d := measurementDecoder{blk: &measurementBlock{}}
	strs, byts := measurementFieldBytes(fields)
	d.s.b.Grow(strs)
	if byts > 0 {
		d.b = make([]byte, 0, byts)
	}
	m := &d.blk.m
	var seen tagSet
	for f := range fields.all() {
		seen.add(f.tag)
		if err := d.decodeField(f, version); err != nil {
			return nil, err
		}
	}
	for _, req := range [...]uint8{tagScheme, tagName, tagGeneration, tagLoaderSHA256, tagDataSHA256, tagExclLink,
		tagDataLink, tagHostOverrides, tagVerdict, tagKernelCheck, tagKeyringID, tagPrograms} {
		if !seen.has(req) {
			return nil, fmt.Errorf("%w: required field %d missing", ErrMalformed, req)
		}
	}
	return m, nil
}

// measurementBlock is a parsed measurement and what it points to, in one
// allocation: its signer, its requester and its first program.
type measurementBlock struct {
	m      Measurement
	signer Signer
	req    Requester
	progs  [1]ProgramDigest
}

// measurementDecoder decodes one measurement into its block, its strings
// and its byte fields.
type measurementDecoder struct {
	blk *measurementBlock
	s   strArena
	b   []byte // the byte fields' copies, appended
}

// bytes returns a copy of v in the decoder's byte buffer; nil for empty
// v, as clone(v). The copy's capacity is its length, so that appending
// to one field cannot write another; a buffer too small moves on to a
// new one and leaves the copies made so far.
func (d *measurementDecoder) bytes(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	n := len(d.b)
	d.b = append(d.b, v...)
	return d.b[n:len(d.b):len(d.b)]
}

// measurementFieldBytes is the total length of the strings and of the
// byte fields a measurement with these fields has.
func measurementFieldBytes(fields tlvFields) (strs, byts int) {
	for f := range fields.all() {
		switch f.tag {
		case tagName:
			strs += len(f.val)
		case tagEmbeddedDataHash, tagExclHash, tagSignatureSHA256, tagLoaderContext:
			byts += len(f.val)
		case tagSigner:
			strs += stringBytes(f.val, tags(tagSignerSubject, tagSignerID))
			byts += stringBytes(f.val, tags(tagSignerCert, tagSignerKeyID))
		case tagPrograms:
			strs += listStringBytes(f.val, tags(tagProgName, tagProgLicense, tagProgTagUnknown))
		case tagRequester:
			strs += stringBytes(f.val, tags(tagReqExe))
			byts += stringBytes(f.val, tags(tagReqExeSHA256))
		}
	}
	return strs, byts
}

func (d *measurementDecoder) decodeField(f tlvField, version uint16) error {
	const where = "measurement"
	m := &d.blk.m
	switch f.tag {
	case tagScheme:
		v, err := enumU8(f, where, 1, 3)
		m.Scheme = Scheme(v)
		return err
	case tagName:
		m.Name = d.s.str(f.val)
	case tagGeneration:
		v, err := enumU8(f, where, 0, 255)
		m.Generation = lskel.Generation(v)
		return err
	case tagLoaderSHA256:
		if err := fixedLen(f, 32, where); err != nil {
			return err
		}
		copy(m.LoaderSHA256[:], f.val)
	case tagDataSHA256:
		if err := fixedLen(f, 32, where); err != nil {
			return err
		}
		copy(m.DataSHA256[:], f.val)
	case tagEmbeddedDataHash:
		m.EmbeddedDataHash = d.bytes(f.val)
		return fixedLen(f, 32, where)
	case tagExclHash:
		m.ExclHash = d.bytes(f.val)
		return fixedLen(f, 32, where)
	case tagSignatureSHA256:
		m.SignatureSHA256 = d.bytes(f.val)
		return fixedLen(f, 32, where)
	case tagExclLink:
		v, err := enumU8(f, where, 1, 4)
		m.ExclLink = Link(v)
		return err
	case tagDataLink:
		v, err := enumU8(f, where, 1, 4)
		m.DataLink = Link(v)
		return err
	case tagHostOverrides:
		v, err := enumU8(f, where, 0, 1)
		m.HostOverrides = v == 1
		return err
	case tagVerdict:
		v, err := enumU8(f, where, 0, 7)
		m.Verdict = cms.Verdict(v)
		return err
	case tagKernelCheck:
		v, err := enumU8(f, where, 0, 3)
		m.KernelCheck = KernelCheck(v)
		return err
	case tagKeyringID:
		if err := fixedLen(f, 4, where); err != nil {
			return err
		}
		m.KeyringID = int32(binary.BigEndian.Uint32(f.val))
	case tagSigner:
		s, err := d.decodeSigner(f.val)
		m.Signer = s
		return err
	case tagPrograms:
		p, err := d.decodePrograms(f.val, version)
		m.Programs = p
		return err
	case tagLoaderContext:
		m.LoaderContextSHA256 = d.bytes(f.val)
		return fixedLen(f, 32, where)
	case tagRequester:
		r, err := d.decodeRequester(f.val)
		m.Requester = r
		return err
	case tagBootTime:
		if err := fixedLen(f, 8, where); err != nil {
			return err
		}
		m.BootTimeNS = binary.BigEndian.Uint64(f.val)
		if m.BootTimeNS == 0 {
			return fmt.Errorf("%w: %s: boot time is present but zero", ErrMalformed, where)
		}
	default:
		return fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
	}
	return nil
}

func enumU8(f tlvField, where string, lo, hi uint8) (uint8, error) {
	if err := fixedLen(f, 1, where); err != nil {
		return 0, err
	}
	v := f.val[0]
	if v < lo || v > hi {
		return 0, fmt.Errorf("%w: %s: field %d has value %d outside %d..%d", ErrMalformed, where, f.tag, v, lo, hi)
	}
	return v, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func u32Field(f tlvField, where string) (uint32, error) {
	if err := fixedLen(f, 4, where); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(f.val), nil
}

func (d *measurementDecoder) decodeSigner(b []byte) (*Signer, error) {
	const where = "signer"
	fields, err := splitTLV(b, where)
	if err != nil {
		return nil, err
	}
	s := &d.blk.signer
	for f := range fields.all() {
		if err := nonEmpty(f, where); err != nil {
			return nil, err
		}
		switch f.tag {
		case tagSignerCert:
			if err := fixedLen(f, 32, where); err != nil {
				return nil, err
			}
			s.CertSHA256 = d.bytes(f.val)
		case tagSignerSubject:
			s.Subject = d.s.str(f.val)
		case tagSignerID:
			s.ID = d.s.str(f.val)
		case tagSignerKeyID:
			s.KeyID = d.bytes(f.val)
		default:
			return nil, fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: %s: present but empty", ErrMalformed, where)
	}
	return s, nil
}

// maxPrograms bounds the program list of one measurement.
const maxPrograms = 4096

// minProgramLen is the length of the smallest program entry that decodes
// (version 1: an empty name and the four fixed-size fields).
const minProgramLen = 5 + 9 + 9 + 9 + 37

func (d *measurementDecoder) decodePrograms(b []byte, version uint16) ([]ProgramDigest, error) {
	var out []ProgramDigest
	switch n := countFrames(b, minProgramLen, maxPrograms); {
	case n == 0:
	case n <= len(d.blk.progs):
		out = d.blk.progs[:0:n]
	default:
		out = make([]ProgramDigest, 0, n)
	}
	for off := 0; off < len(b); {
		if len(out) >= maxPrograms {
			return nil, fmt.Errorf("%w: more than %d programs", ErrMalformed, maxPrograms)
		}
		where := itemName("program", len(out))
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%w: %s: truncated length at offset %d", ErrMalformed, where, off)
		}
		n := binary.BigEndian.Uint32(b[off:])
		if int64(n) > int64(len(b)-off-4) {
			return nil, fmt.Errorf("%w: %s: length %d exceeds the %d bytes left", ErrMalformed, where, n, len(b)-off-4)
		}
		p, err := d.decodeProgram(b[off+4:off+4+int(n)], where, version)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		off += 4 + int(n)
	}
	return out, nil
}

func (d *measurementDecoder) decodeProgram(b []byte, where string, version uint16) (ProgramDigest, error) {
	var p ProgramDigest
	fields, err := splitTLV(b, where)
	if err != nil {
		return p, err
	}
	seen, tags := 0, 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagProgName:
			p.Name = d.s.str(f.val)
		case tagProgType:
			p.Type, err = u32Field(f, where)
		case tagProgAttachType:
			p.ExpectedAttachType, err = u32Field(f, where)
		case tagProgInsnCount:
			p.InsnCount, err = u32Field(f, where)
		case tagProgDigest:
			if err = fixedLen(f, 32, where); err == nil {
				copy(p.Digest[:], f.val)
			}
		case tagProgLicense:
			if err = nonEmpty(f, where); err == nil {
				p.License = d.s.str(f.val)
			}
			seen-- // optional
		case tagProgKernelTag:
			if err = fixedLen(f, 8, where); err == nil {
				copy(p.KernelTag[:], f.val)
				tags++
			}
			seen--
		case tagProgTagUnknown:
			if err = nonEmpty(f, where); err == nil {
				p.TagUnpredictable = d.s.str(f.val)
				tags++
			}
			seen--
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
		if err != nil {
			return p, err
		}
		seen++
	}
	if seen != 5 {
		return p, fmt.Errorf("%w: %s: %d of the 5 required fields present", ErrMalformed, where, seen)
	}
	switch {
	case version == 1 && tags != 0:
		return p, fmt.Errorf("%w: %s: a version 1 measurement carries no kernel tag", ErrMalformed, where)
	case version == 1:
		p.TagUnpredictable = TagNotMeasured
	case tags != 1:
		return p, fmt.Errorf("%w: %s: want the kernel tag or why it is unknown, exactly one", ErrMalformed, where)
	}
	return p, nil
}

func (d *measurementDecoder) decodeRequester(b []byte) (*Requester, error) {
	const where = "requester"
	fields, err := splitTLV(b, where)
	if err != nil {
		return nil, err
	}
	r := &d.blk.req
	seen := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagReqUID:
			r.UID, err = u32Field(f, where)
			seen++
		case tagReqGID:
			r.GID, err = u32Field(f, where)
			seen++
		case tagReqPID:
			r.PID, err = u32Field(f, where)
			seen++
		case tagReqExe:
			if err = nonEmpty(f, where); err == nil {
				r.Exe = d.s.str(f.val)
			}
		case tagReqExeSHA256:
			if err = fixedLen(f, 32, where); err == nil {
				r.ExeSHA256 = d.bytes(f.val)
			}
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
		if err != nil {
			return nil, err
		}
	}
	if seen != 3 {
		return nil, fmt.Errorf("%w: %s: uid, gid and pid are required", ErrMalformed, where)
	}
	return r, nil
}
