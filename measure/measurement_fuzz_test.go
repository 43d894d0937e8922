package measure

import (
	"bytes"
	"os"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
)

// FuzzParseMeasurement checks that the parser never panics and that every
// encoding it accepts is canonical: re-encoding gives the same bytes.
func FuzzParseMeasurement(f *testing.F) {
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
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical encoding accepted:\n in  %x\n out %x", b, again)
		}
	})
}
