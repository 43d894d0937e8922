package measure

// The record parsers as they were before they decoded into one allocation
// per record (branch verify15b), kept as the reference that
// FuzzParseSameAsReference holds the current ones to: the same value, or
// the same error, for every input.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure/cms"
)

func refParseMeasurement(b []byte) (*Measurement, error) {
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
	m := &Measurement{}
	var seen tagSet
	for f := range fields.all() {
		seen.add(f.tag)
		if err := refDecodeField(m, f, version); err != nil {
			return nil, err
		}
	}
	for _, req := range []uint8{tagScheme, tagName, tagGeneration, tagLoaderSHA256, tagDataSHA256, tagExclLink,
		tagDataLink, tagHostOverrides, tagVerdict, tagKernelCheck, tagKeyringID, tagPrograms} {
		if !seen.has(req) {
			return nil, fmt.Errorf("%w: required field %d missing", ErrMalformed, req)
		}
	}
	return m, nil
}

func refDecodeField(m *Measurement, f tlvField, version uint16) error {
	const where = "measurement"
	switch f.tag {
	case tagScheme:
		v, err := enumU8(f, where, 1, 3)
		m.Scheme = Scheme(v)
		return err
	case tagName:
		m.Name = string(f.val)
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
		m.EmbeddedDataHash = clone(f.val)
		return fixedLen(f, 32, where)
	case tagExclHash:
		m.ExclHash = clone(f.val)
		return fixedLen(f, 32, where)
	case tagSignatureSHA256:
		m.SignatureSHA256 = clone(f.val)
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
		s, err := refDecodeSigner(f.val)
		m.Signer = s
		return err
	case tagPrograms:
		p, err := refDecodePrograms(f.val, version)
		m.Programs = p
		return err
	case tagLoaderContext:
		m.LoaderContextSHA256 = clone(f.val)
		return fixedLen(f, 32, where)
	case tagRequester:
		r, err := refDecodeRequester(f.val)
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

func refDecodeSigner(b []byte) (*Signer, error) {
	const where = "signer"
	fields, err := splitTLV(b, where)
	if err != nil {
		return nil, err
	}
	s := &Signer{}
	for f := range fields.all() {
		if err := nonEmpty(f, where); err != nil {
			return nil, err
		}
		switch f.tag {
		case tagSignerCert:
			if err := fixedLen(f, 32, where); err != nil {
				return nil, err
			}
			s.CertSHA256 = clone(f.val)
		case tagSignerSubject:
			s.Subject = string(f.val)
		case tagSignerID:
			s.ID = string(f.val)
		case tagSignerKeyID:
			s.KeyID = clone(f.val)
		default:
			return nil, fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: %s: present but empty", ErrMalformed, where)
	}
	return s, nil
}

func refDecodePrograms(b []byte, version uint16) ([]ProgramDigest, error) {
	var out []ProgramDigest
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
		p, err := refDecodeProgram(b[off+4:off+4+int(n)], where, version)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		off += 4 + int(n)
	}
	return out, nil
}

func refDecodeProgram(b []byte, where string, version uint16) (ProgramDigest, error) {
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
			p.Name = string(f.val)
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
				p.License = string(f.val)
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
				p.TagUnpredictable = string(f.val)
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

func refDecodeRequester(b []byte) (*Requester, error) {
	const where = "requester"
	fields, err := splitTLV(b, where)
	if err != nil {
		return nil, err
	}
	r := &Requester{}
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
				r.Exe = string(f.val)
			}
		case tagReqExeSHA256:
			if err = fixedLen(f, 32, where); err == nil {
				r.ExeSHA256 = clone(f.val)
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

func refDecodeObject(b []byte, where string) (KernelObject, error) {
	var o KernelObject
	fields, err := splitTLV(b, where)
	if err != nil {
		return o, err
	}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagObjID:
			o.ID, err = u32Field(f, where)
			req++
		case tagObjType:
			o.Type, err = u32Field(f, where)
			req++
		case tagObjTag:
			if err = fixedLen(f, 8, where); err == nil {
				copy(o.Tag[:], f.val)
				if o.Tag == ([8]byte{}) {
					err = fmt.Errorf("%w: %s: tag is present but zero", ErrMalformed, where)
				}
			}
		case tagObjName:
			if err = nonEmpty(f, where); err == nil {
				o.Name = string(f.val)
			}
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, where, f.tag, f.off)
		}
		if err != nil {
			return o, err
		}
	}
	if req != 2 {
		return o, fmt.Errorf("%w: %s: id and type are required", ErrMalformed, where)
	}
	return o, nil
}

func refDecodeObjects(b []byte, what string) ([]KernelObject, error) {
	var out []KernelObject
	for off := 0; off < len(b); {
		if len(out) >= maxObjects {
			return nil, fmt.Errorf("%w: %s: more than %d objects", ErrMalformed, what, maxObjects)
		}
		where := itemName(what, len(out))
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%w: %s: truncated length at offset %d", ErrMalformed, where, off)
		}
		n := binary.BigEndian.Uint32(b[off:])
		if int64(n) > int64(len(b)-off-4) {
			return nil, fmt.Errorf("%w: %s: length %d exceeds the %d bytes left", ErrMalformed, where, n, len(b)-off-4)
		}
		o, err := refDecodeObject(b[off+4:off+4+int(n)], where)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
		off += 4 + int(n)
	}
	return out, nil
}

func refParseLoadResult(b []byte) (*LoadResult, error) {
	const what = "load result"
	fields, err := openEnvelope(b, loadResultMagic, what)
	if err != nil {
		return nil, err
	}
	r := &LoadResult{}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagLRRecord:
			if err = fixedLen(f, 8, what); err == nil {
				r.MeasurementRecord = binary.BigEndian.Uint64(f.val)
			}
			req++
		case tagLRDigest:
			if err = fixedLen(f, 32, what); err == nil {
				copy(r.MeasurementSHA256[:], f.val)
			}
			req++
		case tagLROutcome:
			var v uint8
			v, err = enumU8(f, what, uint8(OutcomeLoaded), uint8(OutcomeMismatch))
			r.Outcome = Outcome(v)
			req++
		case tagLRStep:
			if err = nonEmpty(f, what); err == nil {
				r.Step = string(f.val)
			}
		case tagLRErrno:
			if r.Errno, err = u32Field(f, what); err == nil && r.Errno == 0 {
				err = fmt.Errorf("%w: %s: errno is present but zero", ErrMalformed, what)
			}
		case tagLRReason:
			if err = nonEmpty(f, what); err == nil {
				r.Reason = string(f.val)
			}
		case tagLRLoader:
			var o KernelObject
			o, err = refDecodeObject(f.val, "loader")
			r.Loader = &o
		case tagLRDataMap:
			var o KernelObject
			o, err = refDecodeObject(f.val, "data map")
			r.DataMap = &o
		case tagLRPrograms:
			if err = nonEmpty(f, what); err == nil {
				r.Programs, err = refDecodeObjects(f.val, "program")
			}
		case tagLRMaps:
			if err = nonEmpty(f, what); err == nil {
				r.Maps, err = refDecodeObjects(f.val, "map")
			}
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, what, f.tag, f.off)
		}
		if err != nil {
			return nil, err
		}
	}
	if req != 3 {
		return nil, fmt.Errorf("%w: %s: record, digest and outcome are required", ErrMalformed, what)
	}
	return r, nil
}

func refParseUnloaded(b []byte) (*Unloaded, error) {
	const what = "program unloaded"
	fields, err := openEnvelope(b, unloadedMagic, what)
	if err != nil {
		return nil, err
	}
	u := &Unloaded{}
	req := 0
	for f := range fields.all() {
		var err error
		switch f.tag {
		case tagULID:
			u.ID, err = u32Field(f, what)
			req++
		case tagULTag:
			if err = fixedLen(f, 8, what); err == nil {
				copy(u.Tag[:], f.val)
			}
			req++
		case tagULName:
			if err = nonEmpty(f, what); err == nil {
				u.Name = string(f.val)
			}
		case tagULRecord:
			if err = fixedLen(f, 8, what); err == nil {
				u.Record = binary.BigEndian.Uint64(f.val)
			}
			req++
		default:
			err = fmt.Errorf("%w: %s: unknown field %d at offset %d", ErrMalformed, what, f.tag, f.off)
		}
		if err != nil {
			return nil, err
		}
	}
	if req != 3 {
		return nil, fmt.Errorf("%w: %s: id, tag and record are required", ErrMalformed, what)
	}
	return u, nil
}

// FuzzParseSameAsReference checks that the parsers attest's verification
// uses give, for every input, what the reference parsers above give: the
// same value (reflect.DeepEqual) or an error with the same text and the
// same ErrMalformed wrapping. The seeds are the fuzz targets' own:
// measurements of every fixture and a record of every kind.
func FuzzParseSameAsReference(f *testing.F) {
	for _, b := range measurementSeeds(f) {
		f.Add(b)
	}
	for _, m := range sampleRecords() {
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b) // the new parsers read in, the reference ones b
		m, err := ParseMeasurement(in)
		rm, rerr := refParseMeasurement(b)
		sameParse(t, "ParseMeasurement", m, err, rm, rerr)
		r, err := ParseLoadResult(in)
		rr, rerr := refParseLoadResult(b)
		sameParse(t, "ParseLoadResult", r, err, rr, rerr)
		u, err := ParseUnloaded(in)
		ru, rerr := refParseUnloaded(b)
		sameParse(t, "ParseUnloaded", u, err, ru, rerr)
		var dst Unloaded
		err = dst.UnmarshalBinary(in)
		if rerr == nil {
			sameParse(t, "Unloaded.UnmarshalBinary", &dst, err, ru, rerr)
		} else {
			sameParse(t, "Unloaded.UnmarshalBinary", (*Unloaded)(nil), err, ru, rerr)
		}
		if !bytes.Equal(in, b) {
			t.Fatalf("a parser modified its input")
		}
		// What they return shares no memory with their input.
		for i := range in {
			in[i] ^= 0xff
		}
		if !reflect.DeepEqual(m, rm) || !reflect.DeepEqual(r, rr) {
			t.Fatalf("a parsed value changed with its input")
		}
	})
}

func sameParse[T any](t *testing.T, what string, got *T, err error, want *T, wantErr error) {
	t.Helper()
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("%s: error %v, reference %v", what, err, wantErr)
	case err != nil && (err.Error() != wantErr.Error() || errors.Is(err, ErrMalformed) != errors.Is(wantErr, ErrMalformed)):
		t.Fatalf("%s: error %q, reference %q", what, err, wantErr)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("%s:\n got       %+v\n reference %+v", what, got, want)
	case err != nil && got != nil:
		t.Fatalf("%s: a value with the error %v", what, err)
	}
}
