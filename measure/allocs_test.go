package measure

import (
	"testing"
)

// TestParseAllocs bounds what decoding the records a verifier keeps
// allocates: a measurement is its block, its strings and its byte fields
// (three allocations however many fields it has, with one program); a
// load result with one program and one map is its block and its strings;
// an unload decoded in place allocates nothing. Before, each string, each
// digest, the signer, the requester and each list were allocations of
// their own (16 for a signed measurement, 9 for such a result).
func TestParseAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not kept under the race detector")
	}
	res := sampleLoadResult()
	res.Maps = res.Maps[:1]
	rb, err := res.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ub, err := (&Unloaded{ID: 41, Tag: [8]byte{9}, Record: 8}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		max  float64
		f    func() error
	}{
		{"ParseLoadResult, one program, one map", 2, func() error { _, err := ParseLoadResult(rb); return err }},
		{"Unloaded.UnmarshalBinary", 0, func() error { var u Unloaded; return u.UnmarshalBinary(ub) }},
		{"ParseUnloaded", 1, func() error { _, err := ParseUnloaded(ub); return err }},
	}
	for i, b := range measurementSeeds(t) {
		m, err := ParseMeasurement(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Programs) != 1 {
			continue // a list of more is one more allocation
		}
		cases = append(cases, struct {
			name string
			max  float64
			f    func() error
		}{fixtureHeaders[i] + ": ParseMeasurement", 3, func() error { _, err := ParseMeasurement(b); return err }})
	}
	if len(cases) == 3 {
		t.Fatal("no fixture measurement with one program")
	}
	for _, c := range cases {
		var err error
		got := testing.AllocsPerRun(100, func() {
			if e := c.f(); e != nil {
				err = e
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got > c.max {
			t.Errorf("%s: %v allocations, want at most %v", c.name, got, c.max)
		}
	}
}
