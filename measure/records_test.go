package measure

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/measure/cms"
)

func sampleLoadResult() *LoadResult {
	return &LoadResult{
		MeasurementRecord: 7,
		MeasurementSHA256: [32]byte{1, 2, 3},
		Outcome:           OutcomeLoaded,
		Loader:            &KernelObject{ID: 40, Type: 31, Tag: [8]byte{0xea, 0x17}, Name: "__loader.prog"},
		DataMap:           &KernelObject{ID: 12, Type: 2, Name: "__loader.map"},
		Programs:          []KernelObject{{ID: 41, Type: 17, Tag: [8]byte{9}, Name: "count_sys_enter"}},
		Maps:              []KernelObject{{ID: 13, Type: 2, Name: "per_syscall"}, {ID: 14, Type: 2, Name: "counter_.bss"}},
	}
}

func sampleKernelProgram() *KernelProgram {
	return &KernelProgram{
		Discovery: DiscoveredObserved, ID: 99, Type: 1, Name: "sneaky", Tag: [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
		CreatedByUID: 0, LoadTimeNS: 123456, XlatedSHA256: bytes.Repeat([]byte{5}, 32), MapIDs: []uint32{3, 4},
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	lr := sampleLoadResult()
	failed := &LoadResult{MeasurementRecord: 9, Outcome: OutcomeKernelError, Step: "ProgLoad", Errno: 13}
	refused := &LoadResult{MeasurementRecord: 10, Outcome: OutcomeRefused, Reason: "signature verdict UNKNOWNKEY"}
	for _, r := range []*LoadResult{lr, failed, refused} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseLoadResult(b)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(r, got); d != "" {
			t.Errorf("load result round trip (-want +got):\n%s", d)
		}
	}
	kp := sampleKernelProgram()
	b, err := kp.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	gotKP, err := ParseKernelProgram(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(kp, gotKP); d != "" {
		t.Errorf("kernel program round trip (-want +got):\n%s", d)
	}
	u := &Unloaded{ID: 41, Tag: [8]byte{9}, Name: "count_sys_enter", Record: 8}
	b, err = u.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	gotU, err := ParseUnloaded(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(u, gotU); d != "" {
		t.Errorf("unloaded round trip (-want +got):\n%s", d)
	}
}

// TestRecordsNotInterchangeable checks that one kind's bytes are never read
// as another kind.
func TestRecordsNotInterchangeable(t *testing.T) {
	lr, _ := sampleLoadResult().MarshalBinary()
	kp, _ := sampleKernelProgram().MarshalBinary()
	if _, err := ParseKernelProgram(lr); err == nil {
		t.Error("load result read as an unmeasured program")
	}
	if _, err := ParseLoadResult(kp); err == nil {
		t.Error("unmeasured program read as a load result")
	}
	if _, err := ParseMeasurement(lr); err == nil {
		t.Error("load result read as a measurement")
	}
	if _, err := ParseUnloaded(kp); err == nil {
		t.Error("unmeasured program read as unloaded")
	}
}

func TestRecordsReject(t *testing.T) {
	good, _ := sampleLoadResult().MarshalBinary()
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)-2],
		"trailing":  append(append([]byte{}, good...), 1),
		"no fields": good[:6],
	} {
		if _, err := ParseLoadResult(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	if _, err := (&LoadResult{}).MarshalBinary(); err == nil {
		t.Error("load result without outcome encoded")
	}
}

// TestRefusalsRefused: counts that do not add up or are not in canonical
// order are neither encoded nor decoded.
func TestRefusalsRefused(t *testing.T) {
	good := sampleRefusals()
	b, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(r *Refusals){
		"nothing counted": func(r *Refusals) { r.Requesters[0] = RefusalCount{UID: 0, FirstNS: 1, LastNS: 1} },
		"verdicts short":  func(r *Refusals) { r.Requesters[1].Refused++ },
		"zero verdict count": func(r *Refusals) {
			r.Requesters[0].Verdicts = append(r.Requesters[0].Verdicts, VerdictCount{cms.VerdictBadSig, 0})
		},
		"verdict out of range": func(r *Refusals) { r.Requesters[0].Verdicts[0].Verdict = 8 },
		"verdicts out of order": func(r *Refusals) {
			v := r.Requesters[1].Verdicts
			v[0], v[1] = v[1], v[0]
		},
		"requesters out of order": func(r *Refusals) { r.Requesters[0], r.Requesters[1] = r.Requesters[1], r.Requesters[0] },
		"duplicate requester":     func(r *Refusals) { r.Requesters[1].UID, r.Requesters[1].GID = 0, 0 },
		"last before first":       func(r *Refusals) { r.Requesters[0].LastNS = 1 },
		"empty":                   func(r *Refusals) { r.Requesters = nil },
	} {
		r := sampleRefusals()
		mut(r)
		if _, err := r.MarshalBinary(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	// The decoder applies the same rules to bytes another writer made.
	swapped := bytes.Clone(b)
	// The first requester's verdict list is its last 9 bytes before the
	// second requester's length: changing the count breaks the sum.
	list := swapped[6+5:]
	n := int(list[0])<<24 | int(list[1])<<16 | int(list[2])<<8 | int(list[3])
	list[4+n-1]++
	if _, err := ParseRefusals(swapped); !errors.Is(err, ErrMalformed) {
		t.Errorf("verdicts that do not add up: %v, want ErrMalformed", err)
	}
	if _, err := ParseRefusals(b[:len(b)-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: %v, want ErrMalformed", err)
	}
	if _, err := ParseTransient(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("read as another record kind: %v, want ErrMalformed", err)
	}
}

// FuzzParseRecords checks the record parsers: no panic, and what they
// accept re-encodes to the same bytes.
func FuzzParseRecords(f *testing.F) {
	for _, m := range sampleRecords() {
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A version 1 record re-encodes as version 2 with the same fields.
		canonical := func(again []byte) bool {
			if len(b) >= 6 && len(again) >= 6 && b[4] == 0 && b[5] == 1 {
				return bytes.Equal(again[:4], b[:4]) && bytes.Equal(again[6:], b[6:])
			}
			return bytes.Equal(again, b)
		}
		if r, err := ParseLoadResult(b); err == nil {
			again, err := r.MarshalBinary()
			if err != nil || !canonical(again) {
				t.Fatalf("load result not canonical: %v", err)
			}
		}
		if p, err := ParseKernelProgram(b); err == nil {
			again, err := p.MarshalBinary()
			if err != nil || !canonical(again) {
				t.Fatalf("unmeasured program not canonical: %v", err)
			}
		}
		if u, err := ParseUnloaded(b); err == nil {
			again, err := u.MarshalBinary()
			if err != nil || !canonical(again) {
				t.Fatalf("unloaded not canonical: %v", err)
			}
		}
		if tr, err := ParseTransient(b); err == nil {
			again, err := tr.MarshalBinary()
			if err != nil || !canonical(again) {
				t.Fatalf("transient not canonical: %v", err)
			}
		}
		if e, err := ParseEventsLost(b); err == nil {
			again, err := e.MarshalBinary()
			if err != nil || !canonical(again) {
				t.Fatalf("events lost not canonical: %v", err)
			}
		}
		if r, err := ParseRefusals(b); err == nil {
			again, err := r.MarshalBinary()
			if err != nil || !canonical(again) {
				t.Fatalf("refusals not canonical: %v", err)
			}
		}
	})
}

// sampleRecords has one record of every kind and variant.
func sampleRecords() []interface{ MarshalBinary() ([]byte, error) } {
	return []interface{ MarshalBinary() ([]byte, error) }{
		sampleLoadResult(), sampleKernelProgram(), &Unloaded{ID: 1, Record: 2},
		&LoadResult{MeasurementRecord: 1, Outcome: OutcomeLoaderError, Step: "TestRun", Errno: 22},
		&LoadResult{MeasurementRecord: 1, Outcome: OutcomeMismatch, Reason: "program 0 has kernel tag 01, the measured instructions give 02",
			Programs: []KernelObject{{ID: 9, Type: 17, Tag: [8]byte{1}, Name: "evil"}}},
		&KernelProgram{Discovery: DiscoveredEvent, ID: 7, Type: 1, Name: "f", Tag: [8]byte{1}, LoadTimeNS: 5, PID: 42, Comm: "bpftool", Exe: "/usr/sbin/bpftool"},
		&Transient{Programs: []TransientProgram{{ID: 8, Tag: [8]byte{2}, PID: 43, Comm: "bpftool"}, {ID: 11, Tag: [8]byte{5}, Released: true}}},
		&KernelProgram{Discovery: DiscoveredContradiction, ID: 9, Type: 2, Tag: [8]byte{3}, LoadTimeNS: 6, Contradicts: 4},
		&KernelProgram{Discovery: DiscoveredAfterLoss, ID: 10, Type: 5, Tag: [8]byte{4}, LoadTimeNS: 7},
		&EventsLost{Count: 3, TimeNS: 99},
		sampleRefusals(),
		&Refusals{Requesters: []RefusalCount{{UID: 1000, GID: 1000, Throttled: 7, FirstNS: 5, LastNS: 5}}},
	}
}

// sampleRefusals counts two requesters: one refused (by two verdicts) and
// throttled, one only refused.
func sampleRefusals() *Refusals {
	return &Refusals{Requesters: []RefusalCount{
		{UID: 0, GID: 0, Refused: 3, FirstNS: 10, LastNS: 30, Verdicts: []VerdictCount{{cms.VerdictUnsigned, 3}}},
		{UID: 65534, GID: 100, Refused: 120, Throttled: 4000, FirstNS: 1_000, LastNS: 61_000_000_000,
			Verdicts: []VerdictCount{{cms.VerdictUnknownKey, 20}, {cms.VerdictBadSig, 100}}},
	}}
}

// TestRecordVariantsRoundTrip: every kind and variant decodes to what was encoded.
func TestRecordVariantsRoundTrip(t *testing.T) {
	for i, m := range sampleRecords() {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		var got any
		switch m.(type) {
		case *LoadResult:
			got, err = ParseLoadResult(b)
		case *KernelProgram:
			got, err = ParseKernelProgram(b)
		case *Unloaded:
			got, err = ParseUnloaded(b)
		case *EventsLost:
			got, err = ParseEventsLost(b)
		case *Transient:
			got, err = ParseTransient(b)
		case *Refusals:
			got, err = ParseRefusals(b)
		}
		if err != nil {
			t.Fatalf("%d (%T): %v", i, m, err)
		}
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("%d (%T) round trip (-want +got):\n%s", i, m, diff)
		}
	}
	// An unmeasured program's type, uid and load time are required.
	ev := &KernelProgram{Discovery: DiscoveredEvent, ID: 8, Tag: [8]byte{2}}
	b, _ := ev.MarshalBinary()
	if _, err := ParseKernelProgram(b); err != nil {
		t.Errorf("event program: %v", err)
	}
	if _, err := (&Transient{}).MarshalBinary(); err == nil {
		t.Error("an empty transient record was encoded")
	}
}
