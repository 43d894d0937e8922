package attest

import (
	"crypto/sha256"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
)

// TestApplyAllocs bounds what interpreting the records of an incremental
// verification allocates, with VerifyVsECDSA's six records: a load that
// stays (measurement, result) and one whose loader and program leave
// again before the quote (measurement, result, two unloads). Each
// measurement parses into 3 allocations and each result into 2 (measure's
// TestParseAllocs), an unload into none; the rest is the inventory's own:
// its entries, the persistent map's copied path and the copy of the
// content the new State keeps. 23 when written; 73 before the parsers
// decoded each record into one block.
func TestApplyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not kept under the race detector")
	}
	m := fixtureMeasurement(t, "counter.signed.lskel.h", measure.KernelCheckUnavailable)
	mb, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var id uint32
	object := func(typ uint32, name string) measure.KernelObject {
		id++
		return measure.KernelObject{ID: id, Type: typ, Tag: [8]byte{1, byte(id), byte(id >> 8)}, Name: name}
	}
	type rec struct {
		rn      uint64
		typ     cel.ContentType
		content []byte
	}
	var recs []rec
	add := func(typ cel.ContentType, content []byte) uint64 {
		rn := uint64(len(recs) + 1)
		recs = append(recs, rec{rn, typ, content})
		return rn
	}
	encode := func(v interface{ MarshalBinary() ([]byte, error) }) []byte {
		b, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	load := func(unload bool) {
		mrec := add(cel.BPFMeasurement, mb)
		loader, dataMap := object(31, "__loader.prog"), object(2, "__loader.map")
		res := &measure.LoadResult{MeasurementRecord: mrec, MeasurementSHA256: sha256.Sum256(mb), Outcome: measure.OutcomeLoaded,
			Loader: &loader, DataMap: &dataMap, Maps: []measure.KernelObject{object(2, "counter.bss")}}
		for _, p := range m.Programs {
			o := object(p.Type, measure.KernelName(p.Name))
			o.Tag = p.KernelTag
			res.Programs = append(res.Programs, o)
		}
		rrec := add(cel.BPFLoadResult, encode(res))
		if unload {
			for _, o := range append([]measure.KernelObject{loader}, res.Programs...) {
				add(cel.BPFUnloaded, encode(&measure.Unloaded{ID: o.ID, Tag: o.Tag, Record: rrec}))
			}
		}
	}
	load(false) // the State's inventory: one load
	base := newInventory().edit()
	for _, r := range recs {
		if err := base.apply(r.rn, r.typ, r.content, nil); err != nil {
			t.Fatal(err)
		}
	}
	prev := base.done()
	n := len(recs)
	load(false)
	load(true)
	if got := len(recs) - n; got != 6 {
		t.Fatalf("%d new records, want 6", got)
	}
	h := &History{}
	allocs := testing.AllocsPerRun(200, func() {
		inv := prev.edit()
		h.Loaded, h.Gone = h.Loaded[:0], h.Gone[:0]
		for _, r := range recs[n:] {
			if err := inv.apply(r.rn, r.typ, r.content, h); err != nil {
				t.Fatal(err)
			}
		}
		if got := inv.done(); got.loads != 2 {
			t.Fatalf("%d loads present, want 2", got.loads)
		}
	})
	t.Logf("%v allocations", allocs)
	if max := 26.0; allocs > max {
		t.Errorf("interpreting 6 records allocates %v times, want at most %v", allocs, max)
	}
}
