package cel_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// batchLog is the sample log with its records 2 to 4 (measurement,
// recovery, load result) written as one batch record, and records 5 and 6
// as another: the same events, numbered the same, in four records fewer.
func batchLog(tb testing.TB) []cel.Record {
	tb.Helper()
	plain := sampleLog(tb)
	group := func(recs []cel.Record) cel.Record {
		evs := make([]cel.Event, len(recs))
		for i, r := range recs {
			evs[i] = cel.Event{Type: r.Type, Content: r.Content}
		}
		content, err := cel.EncodeBatch(evs)
		if err != nil {
			tb.Fatal(err)
		}
		return mustRecord(tb, recs[0].RecNum, 14, allBanks, cel.Batch, content)
	}
	return []cel.Record{plain[0], plain[1], group(plain[2:5]), group(plain[5:7]), plain[7]}
}

// events lists the events of recs.
func events(tb testing.TB, recs []cel.Record) []cel.Event {
	tb.Helper()
	var out []cel.Event
	for i := range recs {
		evs, err := recs[i].Events()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, evs...)
	}
	return out
}

// TestBatchEvents: a log with batch records has the events of the same log
// written one per record, numbered the same; each batch is extended once,
// so the two logs replay to different values, each to its own extend chain.
func TestBatchEvents(t *testing.T) {
	plain, batched := sampleLog(t), batchLog(t)
	want := events(t, plain)
	got := events(t, batched)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events of the batched log (-plain +batched):\n%s", diff)
	}
	// The iterator gives the same, without allocating per event.
	var each []cel.Event
	for i := range batched {
		if err := batched[i].EachEvent(func(ev *cel.Event) error {
			each = append(each, cel.Event{RecNum: ev.RecNum, Type: ev.Type, Content: ev.Content})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(want, each); diff != "" {
		t.Fatalf("EachEvent (-want +got):\n%s", diff)
	}
	for i, r := range batched {
		n, err := r.EventCount()
		next, nerr := r.NextRecNum()
		if err != nil || nerr != nil || next != r.RecNum+uint64(n) {
			t.Fatalf("record %d: %d events, next %d: %v %v", i, n, next, err, nerr)
		}
	}

	// Decode(Encode) keeps them.
	dec, err := cel.Decode(encode(t, batched))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, events(t, dec), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("decoded (-want +got):\n%s", diff)
	}

	// Replay: one extend per record, batch or not.
	start := sampleStart()
	got2, err := cel.Replay(dec, start)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range allBanks {
		v := start[h]
		for _, r := range batched {
			v = extend(h, v, cel.ContentDigest(h, r.Type, r.Content))
		}
		if !bytes.Equal(got2[h], v) {
			t.Fatalf("%v: replay %x, want %x", h, got2[h], v)
		}
	}
	rp, err := cel.NewReplayer(start)
	if err != nil {
		t.Fatal(err)
	}
	for i := range dec {
		if err := rp.Add(&dec[i]); err != nil {
			t.Fatal(err)
		}
	}
	if rp.Next() != 8 || rp.Count() != 5 {
		t.Fatalf("next %d after %d records, want 8 after 5", rp.Next(), rp.Count())
	}
}

// TestBatchSequence: the record after a batch of k events carries the
// batch's number plus k; a gap no batch explains, or a number inside the
// batch, is ErrSequence.
func TestBatchSequence(t *testing.T) {
	recs := batchLog(t)
	start := sampleStart()
	for _, tc := range []struct {
		name string
		rn   uint64
		ok   bool
	}{
		{"after the batch", 7, true},
		{"as if the batch were one record", 6, false},
		{"a gap", 8, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := slices.Clone(recs)
			last := c[4]
			c[4] = mustRecord(t, tc.rn, 14, allBanks, last.Type, last.Content)
			_, err := cel.Replay(c, start)
			if tc.ok != (err == nil) {
				t.Fatalf("recnum %d after a batch of 2 at 5: %v", tc.rn, err)
			}
			var re *cel.ReplayError
			if err != nil && (!errors.Is(err, cel.ErrSequence) || !errors.As(err, &re) || re.Index != 4) {
				t.Fatalf("error %v, want ErrSequence at record 4", err)
			}
		})
	}
}

// TestBatchBounds: content that is not a well-formed batch is refused by
// EncodeBatch, ParseBatch and Decode, each naming what is wrong.
func TestBatchBounds(t *testing.T) {
	ev := func(t cel.ContentType, c string) cel.Event { return cel.Event{Type: t, Content: []byte(c)} }
	m := ev(cel.BPFMeasurement, "m")
	many := make([]cel.Event, cel.MaxBatchEvents+1)
	for i := range many {
		many[i] = m
	}
	for _, tc := range []struct {
		name string
		evs  []cel.Event
		want string
	}{
		{"none", nil, "0 events"},
		{"one", []cel.Event{m}, "1 events"},
		{"too many", many, fmt.Sprintf("%d events", cel.MaxBatchEvents+1)},
		{"nested batch", []cel.Event{m, ev(cel.Batch, "")}, "a batch inside a batch"},
		{"boot header", []cel.Event{ev(cel.BootHeader, ""), m}, "a boot header inside a batch"},
		{"unknown type", []cel.Event{m, ev(0xB0FF, "")}, "unknown content type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cel.EncodeBatch(tc.evs)
			if !errors.Is(err, cel.ErrBatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("EncodeBatch: %v, want %q", err, tc.want)
			}
		})
	}
	if b, err := cel.EncodeBatch(many[:cel.MaxBatchEvents]); err != nil {
		t.Fatalf("a batch of MaxBatchEvents: %v", err)
	} else if evs, err := cel.ParseBatch(0, b); err != nil || len(evs) != cel.MaxBatchEvents {
		t.Fatalf("ParseBatch of MaxBatchEvents: %d, %v", len(evs), err)
	}

	good, err := cel.EncodeBatch([]cel.Event{m, ev(cel.BPFLoadResult, "result")})
	if err != nil {
		t.Fatal(err)
	}
	over := bytes.Repeat(good[:11], cel.MaxBatchEvents+1) // 1,025 one-byte measurements
	nested := slices.Clone(good)
	nested[0], nested[5] = 0xB1, 0x04
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"empty", nil, "0 events"},
		{"one event", good[:11], "1 events"},
		{"truncated header", good[:len(good)-len("result")-3], "event 1"},
		{"truncated content", good[:len(good)-1], "only 5 bytes left"},
		{"lengths disagree", func() []byte { b := slices.Clone(good); b[4]++; return b }(), "content length"},
		{"unknown top-level type", func() []byte { b := slices.Clone(good); b[11] = 0x07; return b }(), "unknown content type"},
		{"nested batch", nested, "a batch inside a batch"},
		{"too many", over, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := cel.ParseBatch(0, tc.content); !errors.Is(err, cel.ErrBatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseBatch: %v, want %q", err, tc.want)
			}
			r := mustRecord(t, 3, 14, allBanks, cel.Batch, tc.content)
			b, err := r.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			_, err = cel.Decode(b)
			var de *cel.DecodeError
			if !errors.As(err, &de) || !errors.Is(err, cel.ErrMalformed) || de.Field != "batch" || !strings.Contains(de.Detail, tc.want) {
				t.Fatalf("Decode: %v, want a malformed batch (%q)", err, tc.want)
			}
			if _, err := r.Events(); !errors.Is(err, cel.ErrBatch) {
				t.Fatalf("Events: %v", err)
			}
		})
	}
	if _, err := cel.ParseBatch(^uint64(0), good); !errors.Is(err, cel.ErrBatch) {
		t.Fatalf("a batch numbered past the largest record number: %v", err)
	}
}

// TestBatchGolden pins the bytes, the text view and the CEL-JSON of the
// batched sample log: a batch's events are shown one by one.
func TestBatchGolden(t *testing.T) {
	recs := batchLog(t)
	golden(t, "batch.cel", encode(t, recs))
	text := goldenText(t, "batch.txt", recs)
	for _, want := range []string{" batch recnum=2 events=3\n", "14 - recovery recnum=3 batch=2 action=rolled_forward", "14 - bpf_unloaded recnum=6 batch=5 len=10\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("text view lacks %q:\n%s", want, text)
		}
	}
	var js bytes.Buffer
	if err := cel.WriteJSON(&js, recs, func(t cel.ContentType, c []byte) any { return map[string]int{"len": len(c)} }); err != nil {
		t.Fatal(err)
	}
	golden(t, "batch.json", js.Bytes())
	var parsed []struct {
		RecNum  uint64 `json:"recnum"`
		Content struct {
			Kind   string `json:"kind"`
			Fields struct {
				Events []struct {
					RecNum  uint64 `json:"recnum"`
					Content struct {
						Kind string `json:"kind"`
					} `json:"content"`
				} `json:"events"`
			} `json:"fields"`
		} `json:"content"`
	}
	if err := json.Unmarshal(js.Bytes(), &parsed); err != nil {
		t.Fatal(err)
	}
	b := parsed[2].Content
	if b.Kind != "batch" || len(b.Fields.Events) != 3 || b.Fields.Events[1].RecNum != 3 || b.Fields.Events[1].Content.Kind != "recovery" {
		t.Fatalf("json batch record: %+v", b)
	}
}

// FuzzBatch checks the batch codec both ways: events built from the input
// encode, if EncodeBatch accepts them, to content that ParseBatch gives
// back exactly; and content ParseBatch accepts encodes back to the same
// bytes (one encoding per batch). Neither panics.
func FuzzBatch(f *testing.F) {
	recs := batchLog(f)
	f.Add(recs[2].Content, []byte{0, 3, 1, 7})
	f.Add(recs[3].Content, []byte{2, 0})
	f.Add([]byte{}, []byte{})
	f.Add(recs[2].Content[:20], []byte{4, 4, 4})
	types := []cel.ContentType{cel.BPFMeasurement, cel.BPFLoadResult, cel.BPFUnmeasured, cel.BPFUnloaded,
		cel.BPFEventsLost, cel.BPFTransient, cel.BPFRefusals, cel.AgentStart, cel.Recovery, cel.BootHeader, cel.Batch, 0xB0FF}
	f.Fuzz(func(t *testing.T, b, split []byte) {
		// encode(decode(b)) == b for accepted b.
		if evs, err := cel.ParseBatch(7, b); err == nil {
			for i, ev := range evs {
				if ev.RecNum != 7+uint64(i) {
					t.Fatalf("event %d numbered %d", i, ev.RecNum)
				}
			}
			again, err := cel.EncodeBatch(evs)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encoding %x: %x, %v", b, again, err)
			}
		} else if !errors.Is(err, cel.ErrBatch) {
			t.Fatalf("ParseBatch error %v is not ErrBatch", err)
		}
		// decode(encode(x)) == x: split b into events, each byte of split
		// choosing a type and a length.
		var evs []cel.Event
		rest := b
		for _, s := range split {
			n := min(int(s>>4), len(rest))
			evs = append(evs, cel.Event{Type: types[int(s&0x0f)%len(types)], Content: rest[:n:n]})
			rest = rest[n:]
		}
		enc, err := cel.EncodeBatch(evs)
		if err != nil {
			if !errors.Is(err, cel.ErrBatch) {
				t.Fatalf("EncodeBatch error %v is not ErrBatch", err)
			}
			return
		}
		dec, err := cel.ParseBatch(0, enc)
		if err != nil {
			t.Fatalf("ParseBatch of an encoded batch: %v", err)
		}
		if len(dec) != len(evs) {
			t.Fatalf("%d events back, encoded %d", len(dec), len(evs))
		}
		for i := range dec {
			if dec[i].RecNum != uint64(i) || dec[i].Type != evs[i].Type || !bytes.Equal(dec[i].Content, evs[i].Content) {
				t.Fatalf("event %d: %+v, encoded %+v", i, dec[i], evs[i])
			}
		}
	})
}
