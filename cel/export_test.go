package cel_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
// goldenText pins the text view of recs (measurements' contents quoted)
// in the golden file name and returns it.
func goldenText(t *testing.T, name string, recs []cel.Record) string {
	t.Helper()
	render := func(t cel.ContentType, c []byte) string {
		if t == cel.BPFMeasurement && len(c) > 0 {
			return fmt.Sprintf("text=%q", c)
		}
		return ""
	}
	var text bytes.Buffer
	if err := cel.WriteText(&text, recs, render); err != nil {
		t.Fatal(err)
	}
	golden(t, name, text.Bytes())
	return text.String()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

// TestGolden pins the TLV bytes, the text view and the CEL-JSON of the
// sample log: any change to the format shows up here.
func TestGolden(t *testing.T) {
	recs := sampleLog(t)
	golden(t, "sample.cel", encode(t, recs))

	text := goldenText(t, "sample.txt", recs)
	if n := strings.Count(text, "\n"); n != len(recs) {
		t.Errorf("text view has %d lines for %d records", n, len(recs))
	}

	var js bytes.Buffer
	if err := cel.WriteJSON(&js, recs, nil); err != nil {
		t.Fatal(err)
	}
	golden(t, "sample.json", js.Bytes())
	var parsed []map[string]any
	if err := json.Unmarshal(js.Bytes(), &parsed); err != nil || len(parsed) != len(recs) {
		t.Fatalf("CEL-JSON does not parse back to %d records: %v", len(recs), err)
	}
	var again bytes.Buffer
	if err := cel.WriteJSON(&again, recs, nil); err != nil || !bytes.Equal(js.Bytes(), again.Bytes()) {
		t.Fatal("CEL-JSON export is not deterministic")
	}
}

func TestExportEmptyAndBadContent(t *testing.T) {
	var js bytes.Buffer
	if err := cel.WriteJSON(&js, nil, nil); err != nil || js.String() != "[]\n" {
		t.Fatalf("empty JSON = %q, %v", js.String(), err)
	}
	// A management record whose content does not parse is still exported,
	// with the error, and the text view stays one line.
	r := mustRecord(t, 0, 14, allBanks, cel.BootHeader, []byte("junk\nmore"))
	js.Reset()
	if err := cel.WriteJSON(&js, []cel.Record{r}, nil); err != nil || !strings.Contains(js.String(), `"error":"cel: parse boot_header`) {
		t.Fatalf("JSON = %s, %v", js.String(), err)
	}
	var text bytes.Buffer
	render := func(cel.ContentType, []byte) string { return "a\nb" }
	b := mustRecord(t, 1, 14, allBanks, cel.BPFLoadResult, nil)
	if err := cel.WriteText(&text, []cel.Record{r, b}, render); err != nil || strings.Count(text.String(), "\n") != 2 {
		t.Fatalf("text = %q, %v", text.String(), err)
	}
}
