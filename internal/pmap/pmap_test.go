package pmap

import (
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// version is a Map and the plain map it must equal.
type version struct {
	m    Map[uint64]
	want map[uint64]uint64
}

// check compares every way of reading m with want.
func check(t *testing.T, what string, m Map[uint64], want map[uint64]uint64) {
	t.Helper()
	if m.Len() != len(want) {
		t.Fatalf("%s: Len %d, want %d", what, m.Len(), len(want))
	}
	keys := slices.Sorted(maps.Keys(want))
	var got []uint64
	for k, v := range m.All() {
		if v != want[k] {
			t.Fatalf("%s: All yields %d=%d, want %d", what, k, v, want[k])
		}
		got = append(got, k)
	}
	if !slices.Equal(got, keys) {
		t.Fatalf("%s: All yields keys %v, want %v", what, got, keys)
	}
	for k, v := range want {
		if g, ok := m.Get(k); !ok || g != v {
			t.Fatalf("%s: Get(%d) = %d %v, want %d", what, k, g, ok, v)
		}
	}
	max, ok := m.Max()
	if ok != (len(keys) > 0) || ok && max != keys[len(keys)-1] {
		t.Fatalf("%s: Max = %d %v, keys %v", what, max, ok, keys)
	}
}

// run applies ops, read from b, to edits of versions kept along the way,
// and checks after each step that every version still reads as it did
// when it was made: a later edit never changes an earlier version.
func run(t *testing.T, b []byte) {
	versions := []version{{want: map[uint64]uint64{}}}
	e := versions[0].m.Edit()
	want := map[uint64]uint64{}
	var keys []uint64
	for len(b) >= 3 {
		op, arg := b[0], binary.LittleEndian.Uint16(b[1:3])
		b = b[3:]
		var k uint64
		switch {
		case op&0x60 == 0x60 && len(b) >= 8: // a key anywhere
			k = binary.LittleEndian.Uint64(b)
			b = b[8:]
		case op&0x40 != 0 && len(keys) > 0: // a key seen before
			k = keys[int(arg)%len(keys)]
		default: // a small key
			k = uint64(arg) % 2048
		}
		switch op % 5 {
		case 0, 1: // set
			e.Set(k, uint64(arg))
			want[k] = uint64(arg)
			keys = append(keys, k)
		case 2: // delete
			_, had := want[k]
			if got := e.Delete(k); got != had {
				t.Fatalf("Delete(%d) = %v, want %v", k, got, had)
			}
			delete(want, k)
		case 3: // freeze a version, keep editing it
			versions = append(versions, version{e.Map(), maps.Clone(want)})
		case 4: // edit an earlier version instead
			v := versions[int(arg)%len(versions)]
			versions = append(versions, version{e.Map(), maps.Clone(want)})
			e, want = v.m.Edit(), maps.Clone(v.want)
		}
		if g, ok := e.Get(k); ok != hasKey(want, k) || ok && g != want[k] {
			t.Fatalf("edit: Get(%d) = %d %v after op %d", k, g, ok, op)
		}
		if e.Len() != len(want) {
			t.Fatalf("edit: Len %d, want %d", e.Len(), len(want))
		}
	}
	versions = append(versions, version{e.Map(), want})
	for i, v := range versions {
		check(t, "version "+string(rune('0'+i%10)), v.m, v.want)
	}
}

func hasKey(m map[uint64]uint64, k uint64) bool {
	_, ok := m[k]
	return ok
}

// TestRandom runs random operation sequences.
func TestRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, 3*r.IntN(600))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		run(t, b)
	}
}

// TestAscending builds a map as the verifier's inventory does: keys
// appended in ascending order, some deleted later, versions kept.
func TestAscending(t *testing.T) {
	var m Map[uint64]
	want := map[uint64]uint64{}
	var old []version
	for k := uint64(0); k < 5000; k++ {
		e := m.Edit()
		e.Set(k, k+1)
		want[k] = k + 1
		if k%3 == 1 {
			e.Delete(k - 1)
			delete(want, k-1)
		}
		m = e.Map()
		if k%997 == 0 {
			old = append(old, version{m, maps.Clone(want)})
		}
	}
	check(t, "final", m, want)
	for _, v := range old {
		check(t, "old", v.m, v.want)
	}
	e := m.Edit()
	for k := range want {
		e.Delete(k)
	}
	if e.Len() != 0 || e.m.root != nil {
		t.Fatalf("emptied map: Len %d, root %v", e.Len(), e.m.root)
	}
	check(t, "before emptying", m, want)
}

// TestKeyRange sets the extreme keys.
func TestKeyRange(t *testing.T) {
	e := Map[uint64]{}.Edit()
	want := map[uint64]uint64{}
	for _, k := range []uint64{0, 1, 31, 32, 1 << 40, 1<<64 - 1, 1<<63 + 5} {
		e.Set(k, k^0xff)
		want[k] = k ^ 0xff
	}
	check(t, "extremes", e.Map(), want)
}

// TestEditCopiesOnce: an edit copies a node once, then changes its copy.
func TestEditCopiesOnce(t *testing.T) {
	e := Map[uint64]{}.Edit()
	for k := range uint64(1024) {
		e.Set(k, k)
	}
	base := e.Map()
	allocs := testing.AllocsPerRun(100, func() {
		e := base.Edit()
		for k := uint64(1024); k < 1024+32; k++ {
			e.Set(k, k) // one new leaf, its branch and a new root
		}
		e.Map()
	})
	// The new leaf's values grow by doubling: 6 allocations for 32; the
	// rest is per edit (the Edit, its tokens, the nodes of one path).
	if allocs > 16 {
		t.Errorf("%v allocations to add 32 keys, want far fewer than one per key", allocs)
	}
}

// FuzzOps: any sequence of operations keeps every version equal to a
// plain map's.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 0, 3, 0, 0, 4, 0, 0, 0x60, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0, 0xff, 0xff, 1, 0, 0x80, 3, 0, 0, 2, 0xff, 0xff, 4, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 3*2000 {
			return
		}
		run(t, b)
	})
}
