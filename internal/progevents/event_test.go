package progevents

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

// bpfRecord builds a PERF_RECORD_BPF_EVENT as the kernel writes it.
func bpfRecord(kind Kind, id uint32, tag byte, pid uint32, time uint64, cpu uint32) []byte {
	b := make([]byte, headerSize+16+sampleSize)
	binary.NativeEndian.PutUint32(b[0:], recordBPFEvent)
	binary.NativeEndian.PutUint16(b[6:], uint16(len(b)))
	body := b[headerSize:]
	binary.NativeEndian.PutUint16(body[0:], uint16(kind))
	binary.NativeEndian.PutUint32(body[4:], id)
	for i := range 8 {
		body[8+i] = tag
	}
	binary.NativeEndian.PutUint32(body[16:], pid)
	binary.NativeEndian.PutUint32(body[20:], pid+1)
	binary.NativeEndian.PutUint64(body[24:], time)
	binary.NativeEndian.PutUint32(body[32:], cpu)
	return b
}

func lostRecord(n uint64) []byte {
	b := make([]byte, headerSize+16+sampleSize)
	binary.NativeEndian.PutUint32(b[0:], recordLost)
	binary.NativeEndian.PutUint16(b[6:], uint16(len(b)))
	binary.NativeEndian.PutUint64(b[headerSize+8:], n)
	return b
}

func TestParseRecord(t *testing.T) {
	p, err := parseRecord(bpfRecord(Unload, 42, 0xab, 7, 99, 1))
	if err != nil {
		t.Fatal(err)
	}
	want := Event{Kind: Unload, ID: 42, Tag: [8]byte{0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab}, PID: 7, TID: 8, Time: 99, CPU: 1}
	if p.event == nil || *p.event != want {
		t.Errorf("got %+v, want %+v", p.event, want)
	}
	if p, err := parseRecord(lostRecord(5)); err != nil || p.lost != 5 || p.event != nil {
		t.Errorf("lost record: %+v, %v", p, err)
	}
	other := bpfRecord(Kind(3), 1, 1, 1, 1, 1) // PERF_BPF_EVENT of another kind
	if p, err := parseRecord(other); err != nil || p.event != nil {
		t.Errorf("other bpf event: %+v, %v", p, err)
	}
	for name, rec := range map[string][]byte{
		"short":         make([]byte, 4),
		"size mismatch": bpfRecord(Load, 1, 1, 1, 1, 1)[:40],
		"truncated bpf": func() []byte {
			b := bpfRecord(Load, 1, 1, 1, 1, 1)[:20]
			binary.NativeEndian.PutUint16(b[6:], 20)
			return b
		}(),
	} {
		if _, err := parseRecord(rec); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// TestDrainWraps: records that straddle the end of the data area come out
// whole, in order, and the tail ends at the head.
func TestDrainWraps(t *testing.T) {
	data := make([]byte, 128)
	var recs [][]byte
	tail := uint64(100) // start near the end so the second record wraps
	head := tail
	for i := range 2 {
		r := bpfRecord(Load, uint32(i+1), byte(i), 1, uint64(i), 0)
		for j, c := range r {
			data[(head+uint64(j))%128] = c
		}
		head += uint64(len(r))
		recs = append(recs, r)
	}
	var got [][]byte
	end, _, err := drain(data, tail, head, nil, func(r []byte) { got = append(got, slices.Clone(r)) })
	if err != nil || end != head {
		t.Fatalf("drain: end %d head %d err %v", end, head, err)
	}
	if len(got) != 2 || !slices.Equal(got[0], recs[0]) || !slices.Equal(got[1], recs[1]) {
		t.Errorf("records differ:\n%x\n%x", got, recs)
	}
}

func TestDrainRefusesNonsense(t *testing.T) {
	data := make([]byte, 64)
	for name, c := range map[string]struct {
		data       []byte
		tail, head uint64
	}{
		"not a power of two": {make([]byte, 48), 0, 8},
		"more than the ring": {data, 0, 65},
		"zero-size record":   {data, 0, 16},
	} {
		if _, _, err := drain(c.data, c.tail, c.head, nil, func([]byte) {}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "0-3": {0, 1, 2, 3}, "0-1,4,6-7": {0, 1, 4, 6, 7}} {
		got, err := parseCPUList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "3-1", "-1", "0-99999999", "1,"} {
		if _, err := parseCPUList(in); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

// FuzzRing: any ring contents and positions give records or an error,
// never a panic, and the tail never passes the head.
func FuzzRing(f *testing.F) {
	ring := make([]byte, 256)
	copy(ring, bpfRecord(Load, 1, 2, 3, 4, 5))
	copy(ring[48:], lostRecord(2))
	f.Add(ring, uint64(0), uint64(88))
	f.Add(ring, uint64(250), uint64(300))
	f.Fuzz(func(t *testing.T, data []byte, tail, head uint64) {
		n := 1
		for n*2 <= len(data) && n < 1<<16 {
			n *= 2
		}
		if len(data) == 0 {
			return
		}
		end, _, err := drain(data[:n], tail, head, nil, func(rec []byte) {
			if p, err := parseRecord(rec); err == nil && p.event != nil && p.event.Kind != Load && p.event.Kind != Unload {
				t.Fatalf("event of kind %v", p.event.Kind)
			}
		})
		if err == nil && end != head {
			t.Fatalf("drain ended at %d, head %d", end, head)
		}
	})
}
