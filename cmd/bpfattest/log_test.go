package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// logFixture writes a real boot log on a swtpm: the measurement of the
// signed counter fixture and two more records. It returns the swtpm, the
// state directory and the log's path.
func logFixture(t *testing.T) (*tpmtest.Swtpm, string, string) {
	t.Helper()
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dev := tpmtest.Open(t, sw.Spec())
	src, err := os.ReadFile(testutil.LskelFile(t, "headers/counter.signed.lskel.h"))
	if err != nil {
		t.Fatal(err)
	}
	art, err := lskel.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := measure.Inspect(art, measure.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ins.Measurement.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	j, err := journal.Open(context.Background(), dir, dev, journal.Options{
		Clock: func() (cel.ClockInfo, error) {
			c, err := dev.ClockInfo()
			return cel.ClockInfo(c), err
		},
		Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		t cel.ContentType
		c []byte
	}{{cel.BPFMeasurement, m}, {cel.BPFLoadResult, []byte("errno 0")}, {cel.BPFUnloaded, []byte("prog 7")}} {
		if _, err := j.Append(context.Background(), r.t, r.c); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return sw, dir, j.Path()
}

func runLogT(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runLog(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLogText(t *testing.T) {
	_, dir, path := logFixture(t)
	code, out, errs := runLogT(t, "--dir", dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5 (header, agent start, 3 records):\n%s", len(lines), out)
	}
	for i, want := range []string{"boot_header", "agent_start", "bpf_measurement", "bpf_load_result", "bpf_unloaded"} {
		f := strings.Fields(lines[i])
		if len(f) < 4 || f[0] != "14" || len(f[1]) != 64 || f[2] != want {
			t.Errorf("line %d = %q, want pcr 14, a sha256 digest and %s", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[2], "scheme=kernel-lskel") || !strings.Contains(lines[2], "loader_sha256=") {
		t.Errorf("measurement not rendered: %s", lines[2])
	}
	t.Logf("text view:\n%s", out)
	// FILE gives the same as --dir, and --since filters the output only.
	code2, out2, _ := runLogT(t, path, "--since", "3")
	if code2 != exitOK || out2 != strings.Join(lines[3:], "\n")+"\n" {
		t.Fatalf("FILE --since 3: exit %d:\n%s", code2, out2)
	}
}

func TestLogJSONAndCEL(t *testing.T) {
	_, _, path := logFixture(t)
	code, out, errs := runLogT(t, "--format", "json", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var recs []struct {
		RecNum      uint64 `json:"recnum"`
		ContentType string `json:"content_type"`
		Content     struct {
			Kind   string         `json:"kind"`
			Fields map[string]any `json:"fields"`
		} `json:"content"`
	}
	if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != 5 {
		t.Fatalf("json: %v, %d records", err, len(recs))
	}
	if recs[2].Content.Kind != "bpf_measurement" || recs[2].Content.Fields["scheme"] != "kernel-lskel" {
		t.Fatalf("measurement record %+v", recs[2])
	}

	code, out, errs = runLogT(t, "--format=cel", "--since=1", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	got, err := cel.Decode([]byte(out))
	if err != nil || len(got) != 4 || got[0].RecNum != 1 {
		t.Fatalf("cel output: %d records, %v", len(got), err)
	}
	// The slice is a CEL file of its own: readable, digests checked, no
	// replay without a header.
	slice := filepath.Join(t.TempDir(), "slice.cel")
	if err := os.WriteFile(slice, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runLogT(t, slice); code != exitOK || !strings.Contains(errs, "no boot header") {
		t.Fatalf("slice: exit %d: %s", code, errs)
	}
}

func TestLogInvalid(t *testing.T) {
	_, _, path := logFixture(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := cel.Decode(b)
	off := 0
	for i := range 3 {
		off += recs[i].EncodedLen()
	}
	bad := bytes.Clone(b)
	bad[off+40] ^= 1 // a digest byte of record 3
	p := filepath.Join(t.TempDir(), "bad.cel")
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runLogT(t, p)
	if code != exitFailed || !strings.Contains(errs, "record 3") || !strings.Contains(errs, "INVALID") {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Fatalf("printed %d records before the damage, want 3", n)
	}
	if err := os.WriteFile(p, b[:len(b)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runLogT(t, p); code != exitFailed || !strings.Contains(errs, "truncated") {
		t.Fatalf("truncated log: exit %d: %s", code, errs)
	}
}

func TestLogVerifyAgainstPCR(t *testing.T) {
	sw, dir, _ := logFixture(t)
	code, _, errs := runLogT(t, "--dir", dir, "--verify-against-pcr", "--tpm", sw.Spec())
	if code != exitOK || !strings.Contains(errs, "sha256") || strings.Contains(errs, "MISMATCH") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// Something else extends the PCR: the log no longer accounts for it.
	dev := tpmtest.Open(t, sw.Spec())
	ds := map[crypto.Hash][]byte{}
	for _, h := range dev.Banks() {
		ds[h] = make([]byte, h.Size())
	}
	if err := dev.Extend(journal.DefaultPCR, ds); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runLogT(t, "--dir", dir, "--verify-against-pcr", "--tpm", sw.Spec())
	if code != exitFailed || !strings.Contains(errs, "MISMATCH") {
		t.Fatalf("after a foreign extend: exit %d: %s", code, errs)
	}
}

func TestLogUsage(t *testing.T) {
	_, dir, path := logFixture(t)
	for _, args := range [][]string{
		nil,
		{"--dir", dir, path},
		{path, path},
		{"--format", "xml", path},
		{"--verify-against-pcr", path},
		{"--tpm", "sim", path},
		{filepath.Join(dir, "missing.cel")},
		{"--dir", t.TempDir()},
		{"--bogus"},
	} {
		if code, _, _ := runLogT(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// TestRefusalsText: the text view of a "refusals counted" record says how
// many requests were refused (by verdict) and turned away, per requester.
func TestRefusalsText(t *testing.T) {
	r := &measure.Refusals{Requesters: []measure.RefusalCount{
		{UID: 0, GID: 0, Throttled: 2, FirstNS: 5, LastNS: 9},
		{UID: 65534, GID: 100, Refused: 7, FirstNS: 10, LastNS: 20,
			Verdicts: []measure.VerdictCount{{Verdict: cms.VerdictUnsigned, Count: 3}, {Verdict: cms.VerdictBadSig, Count: 4}}},
	}}
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	const want = "refused=7 throttled=2 requester=0:0:throttled=2:boot_time_ns=5-9 requester=65534:100:refused=7:UNSIGNED=3:BADSIG=4:boot_time_ns=10-20"
	if got := recordText(cel.BPFRefusals, b); got != want {
		t.Errorf("text:\n%s\nwant\n%s", got, want)
	}
	if got := recordText(cel.BPFRefusals, b[:len(b)-1]); !strings.Contains(got, "malformed") && !strings.Contains(got, "error") {
		t.Errorf("a truncated record renders as %q", got)
	}
}

// TestLogBatches: a CEL file with a batch record passes the recnum
// continuity check (the record after a batch of k is numbered k on), its
// events are printed one by one, --since inside the batch starts at the
// batch record, and numbering no batch explains is INVALID.
func TestLogBatches(t *testing.T) {
	banks := []crypto.Hash{crypto.SHA256}
	rec := func(rn uint64, typ cel.ContentType, content []byte) cel.Record {
		r, err := cel.NewRecord(rn, 14, banks, typ, content)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	batch, err := cel.EncodeBatch([]cel.Event{
		{Type: cel.BPFLoadResult, Content: []byte("r6")}, {Type: cel.BPFUnloaded, Content: []byte("u7")}, {Type: cel.BPFLoadResult, Content: []byte("r8")}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(next uint64) string {
		b, err := cel.Encode([]cel.Record{rec(5, cel.BPFUnloaded, []byte("u5")), rec(6, cel.Batch, batch), rec(next, cel.BPFUnloaded, []byte("u9"))})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "batch.cel")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write(9)
	code, out, errs := runLogT(t, p)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{" batch recnum=6 events=3\n", "14 - bpf_unloaded recnum=7 batch=6", " bpf_unloaded recnum=9 "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = runLogT(t, "--format=cel", "--since=7", p)
	got, err := cel.Decode([]byte(out))
	if code != exitOK || err != nil || len(got) != 2 || got[0].RecNum != 6 || got[0].Type != cel.Batch {
		t.Fatalf("--since=7: exit %d (%s), %d records from %v: %v", code, errs, len(got), got, err)
	}
	for _, next := range []uint64{7, 10} {
		code, _, errs := runLogT(t, write(next))
		if code != exitFailed || !strings.Contains(errs, "INVALID") || !strings.Contains(errs, "want 9") {
			t.Fatalf("recnum %d after a batch of 3 at 6: exit %d: %s", next, code, errs)
		}
	}
}
