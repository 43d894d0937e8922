package measure

import (
	"bytes"
	"encoding/binary"
	"os"
	"reflect"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
)

// FuzzParseMeasurement checks that the parser never panics and that every
// encoding it accepts is canonical: re-encoding gives the same bytes. A
// version 1 measurement re-encodes as the current version (each program
// then says its kernel tag was not measured); that encoding must be a fixed
// point and decode to the same measurement.
func FuzzParseMeasurement(f *testing.F) {
	for _, enc := range measurementSeeds(f) {
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeasurement(b)
		if err != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted measurement does not re-encode: %v", err)
		}
		if binary.BigEndian.Uint16(b[4:6]) == 1 {
			m2, err := ParseMeasurement(again)
			if err != nil {
				t.Fatalf("version 1 measurement re-encodes to bytes the parser refuses: %v\n in  %x\n out %x", err, b, again)
			}
			if !reflect.DeepEqual(m, m2) {
				t.Fatalf("version 1 measurement changes when upgraded:\n %+v\n %+v", m, m2)
			}
			b = again
			if again, err = m2.MarshalBinary(); err != nil {
				t.Fatalf("upgraded measurement does not re-encode: %v", err)
			}
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical encoding accepted:\n in  %x\n out %x", b, again)
		}
	})
}

// measurementSeeds are the encoded measurements of every fixture, each
// with a requester and a boot time: every field the encoding has.
func measurementSeeds(f testing.TB) [][]byte {
	var seeds [][]byte
	for _, name := range fixtureHeaders {
		src, err := os.ReadFile(testutil.LskelFile(f, "headers/"+name))
		if err != nil {
			f.Fatal(err)
		}
		a, err := lskel.Load(src)
		if err != nil {
			f.Fatal(err)
		}
		insp, err := Inspect(a, Options{Trust: fixtureTrust(f)})
		if err != nil {
			f.Fatal(err)
		}
		m := insp.Measurement
		m.Requester = &Requester{PID: 1, Exe: "/x"}
		m.BootTimeNS = 1
		enc, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, enc)
	}
	return seeds
}
