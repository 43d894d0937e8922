package cel_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// TestWriteJSONSeq: the JSON text sequence of the sample log is RFC 7464
// framing (each text starts with 0x1E and ends with a line feed, no
// separator inside a text) around exactly the objects of the CEL-JSON
// array, in order.
func TestWriteJSONSeq(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "sample.cel"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cel.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	var arr, seq bytes.Buffer
	if err := cel.WriteJSON(&arr, recs, nil); err != nil {
		t.Fatal(err)
	}
	if err := cel.WriteJSONSeq(&seq, recs, nil); err != nil {
		t.Fatal(err)
	}
	var want []json.RawMessage
	if err := json.Unmarshal(arr.Bytes(), &want); err != nil {
		t.Fatal(err)
	}
	texts := bytes.Split(seq.Bytes(), []byte{0x1E})
	if len(texts[0]) != 0 {
		t.Fatalf("output does not start with a record separator: %q", texts[0])
	}
	texts = texts[1:]
	if len(texts) != len(recs) || len(want) != len(recs) {
		t.Fatalf("%d texts, %d array elements, %d records", len(texts), len(want), len(recs))
	}
	for i, tx := range texts {
		if len(tx) == 0 || tx[len(tx)-1] != '\n' || bytes.Count(tx, []byte{'\n'}) != 1 {
			t.Fatalf("text %d is not one line ending in a line feed: %q", i, tx)
		}
		var got, exp any
		if err := json.Unmarshal(tx, &got); err != nil {
			t.Fatalf("text %d: %v", i, err)
		}
		json.Unmarshal(want[i], &exp)
		g, _ := json.Marshal(got)
		e, _ := json.Marshal(exp)
		if !bytes.Equal(g, e) {
			t.Errorf("text %d:\n%s\nwant\n%s", i, g, e)
		}
	}
	var empty bytes.Buffer
	if err := cel.WriteJSONSeq(&empty, nil, nil); err != nil || empty.Len() != 0 {
		t.Errorf("no records: %q, %v", empty.String(), err)
	}
}
