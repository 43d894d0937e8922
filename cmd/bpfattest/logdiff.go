package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
)

// logDigest is what log --diff compares of one log: per artifact name, the
// schemes, signers, loader and data digests and original programs its
// measurements show, and the unmeasured programs it recorded (by name and
// type). Record
// numbers, times and kernel ids differ between any two boots and are left
// out; what is compared is what was measured.
type logDigest struct {
	Path       string                      `json:"path"`
	BootID     string                      `json:"boot_id,omitempty"`
	Records    int                         `json:"records"`
	Artifacts  map[string]*artifactDigests `json:"artifacts"`
	Unmeasured map[string]bool             `json:"-"`
}

// artifactDigests are the facts measured of one artifact name, each kept
// as a printable item ("signer ...", "loader_sha256 ...").
type artifactDigests struct {
	Loads int             `json:"loads"`
	Facts map[string]bool `json:"-"`
}

// logDiff is the comparison of two logs.
type logDiff struct {
	Artifacts  []artifactDiff     `json:"artifacts"`
	Unmeasured factDiff           `json:"unmeasured"`
	Count      int                `json:"differences"`
	Logs       map[string]logSide `json:"logs"`
}

type logSide struct {
	Path    string `json:"path"`
	BootID  string `json:"boot_id,omitempty"`
	Records int    `json:"records"`
}

// artifactDiff says how one artifact name differs: present in one log
// only, or with facts (signers, digests, programs) in one and not the
// other.
type artifactDiff struct {
	Name   string `json:"name"`
	OnlyIn string `json:"only_in,omitempty"` // "a" or "b"
	LoadsA int    `json:"loads_a"`
	LoadsB int    `json:"loads_b"`
	factDiff
}

type factDiff struct {
	OnlyA []string `json:"only_in_a,omitempty"`
	OnlyB []string `json:"only_in_b,omitempty"`
}

// runLogDiff implements `bpfattest log --diff A B [--format text|json]`.
// Exit 0 when the logs measured the same things, 1 when they differ, 2
// when either cannot be read or does not check.
func runLogDiff(args []string, format string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "bpfattest log: --diff takes two logs (files or state directories)")
		return exitUsage
	}
	var sides [2]*logDigest
	for i, p := range args {
		d, err := digestLog(p)
		if err != nil {
			fmt.Fprintf(stderr, "bpfattest log: %v\n", err)
			return exitUsage
		}
		sides[i] = d
	}
	diff := diffLogs(sides[0], sides[1])
	var err error
	switch format {
	case "json":
		err = writeJSON(stdout, diff)
	case "text":
		err = printLogDiff(stdout, diff)
	default:
		fmt.Fprintf(stderr, "bpfattest log: --diff prints text or json, not %q\n", format)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest log: %v\n", err)
		return exitUsage
	}
	if diff.Count > 0 {
		return exitFailed
	}
	return exitOK
}

// digestLog reads a log file, or a state directory's latest boot log, and
// collects what it measured. A log that does not check (digests, order,
// replay) is refused: a diff of forged records proves nothing.
func digestLog(path string) (*logDigest, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		p, _, err := latestBootLog(path)
		if err != nil {
			return nil, err
		}
		path = p
	}
	lg, checkErr, err := readLog(path)
	if err != nil {
		return nil, err
	}
	if checkErr != nil {
		return nil, fmt.Errorf("%s: INVALID: %w", path, checkErr)
	}
	d := &logDigest{Path: path, BootID: lg.Boot.BootID, Records: len(lg.Records),
		Artifacts: map[string]*artifactDigests{}, Unmeasured: map[string]bool{}}
	for i := range lg.Records {
		// Events, not records: a batch record's events count one by one.
		if err := lg.Records[i].EachEvent(func(r *cel.Event) error {
			return d.addEvent(path, r)
		}); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// addEvent folds one event of a log into d.
func (d *logDigest) addEvent(path string, r *cel.Event) error {
	switch r.Type {
	case cel.BPFMeasurement:
		m, err := measure.ParseMeasurement(r.Content)
		if err != nil {
			return fmt.Errorf("%s: record %d: %w", path, r.RecNum, err)
		}
		d.addMeasurement(m)
	case cel.BPFUnmeasured:
		p, err := measure.ParseKernelProgram(r.Content)
		if err != nil {
			return fmt.Errorf("%s: record %d: %w", path, r.RecNum, err)
		}
		// Kernel ids, tags of relocated code and translated digests
		// change with every load; name and type are what compare.
		d.Unmeasured[fmt.Sprintf("program %q type %s", p.Name, lskel.ProgTypeName(p.Type))] = true
	}
	return nil
}

func (d *logDigest) addMeasurement(m *measure.Measurement) {
	a := d.Artifacts[m.Name]
	if a == nil {
		a = &artifactDigests{Facts: map[string]bool{}}
		d.Artifacts[m.Name] = a
	}
	a.Loads++
	signer := "none"
	if m.Signer != nil {
		signer = fmt.Sprintf("%q cert_sha256 %s", m.Signer.Name(), hex.EncodeToString(m.Signer.CertSHA256))
	}
	for _, f := range []string{
		"scheme " + m.Scheme.String(),
		"signature " + m.Verdict.String(),
		"signer " + signer,
		"loader_sha256 " + hex.EncodeToString(m.LoaderSHA256[:]),
		"data_sha256 " + hex.EncodeToString(m.DataSHA256[:]),
	} {
		a.Facts[f] = true
	}
	for _, p := range m.Programs {
		a.Facts[fmt.Sprintf("program %s sha256 %s", p.Name, hex.EncodeToString(p.Digest[:]))] = true
	}
}

func diffFacts(a, b map[string]bool) factDiff {
	var d factDiff
	for f := range a {
		if !b[f] {
			d.OnlyA = append(d.OnlyA, f)
		}
	}
	for f := range b {
		if !a[f] {
			d.OnlyB = append(d.OnlyB, f)
		}
	}
	slices.Sort(d.OnlyA)
	slices.Sort(d.OnlyB)
	return d
}

func diffLogs(a, b *logDigest) *logDiff {
	out := &logDiff{Artifacts: []artifactDiff{}, Logs: map[string]logSide{
		"a": {a.Path, a.BootID, a.Records}, "b": {b.Path, b.BootID, b.Records}}}
	names := slices.Sorted(maps.Keys(a.Artifacts))
	for n := range b.Artifacts {
		if a.Artifacts[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	empty := &artifactDigests{Facts: map[string]bool{}}
	for _, n := range names {
		x, y := a.Artifacts[n], b.Artifacts[n]
		ad := artifactDiff{Name: n}
		switch {
		case x == nil:
			ad.OnlyIn, x = "b", empty
		case y == nil:
			ad.OnlyIn, y = "a", empty
		}
		ad.LoadsA, ad.LoadsB = x.Loads, y.Loads
		ad.factDiff = diffFacts(x.Facts, y.Facts)
		if ad.OnlyIn != "" || len(ad.OnlyA)+len(ad.OnlyB) > 0 {
			out.Artifacts = append(out.Artifacts, ad)
			out.Count++
		}
	}
	out.Unmeasured = diffFacts(a.Unmeasured, b.Unmeasured)
	out.Count += len(out.Unmeasured.OnlyA) + len(out.Unmeasured.OnlyB)
	return out
}

// printLogDiff writes the comparison for auditors: "-" is in A only, "+"
// in B only.
func printLogDiff(w io.Writer, d *logDiff) error {
	var b strings.Builder
	side := func(mark string, s logSide) {
		fmt.Fprintf(&b, "%s %s (boot %s, %d records)\n", mark, s.Path, orDash(s.BootID), s.Records)
	}
	side("---", d.Logs["a"])
	side("+++", d.Logs["b"])
	for _, a := range d.Artifacts {
		switch a.OnlyIn {
		case "a":
			fmt.Fprintf(&b, "artifact %s: only in A (%d loads)\n", a.Name, a.LoadsA)
		case "b":
			fmt.Fprintf(&b, "artifact %s: only in B (%d loads)\n", a.Name, a.LoadsB)
		default:
			fmt.Fprintf(&b, "artifact %s: differs (%d loads in A, %d in B)\n", a.Name, a.LoadsA, a.LoadsB)
		}
		for _, f := range a.OnlyA {
			fmt.Fprintf(&b, "  - %s\n", f)
		}
		for _, f := range a.OnlyB {
			fmt.Fprintf(&b, "  + %s\n", f)
		}
	}
	if len(d.Unmeasured.OnlyA)+len(d.Unmeasured.OnlyB) > 0 {
		fmt.Fprintln(&b, "unmeasured programs:")
		for _, f := range d.Unmeasured.OnlyA {
			fmt.Fprintf(&b, "  - %s\n", f)
		}
		for _, f := range d.Unmeasured.OnlyB {
			fmt.Fprintf(&b, "  + %s\n", f)
		}
	}
	if d.Count == 0 {
		fmt.Fprintln(&b, "the logs measured the same artifacts, signers and digests")
	} else {
		fmt.Fprintf(&b, "%d difference(s)\n", d.Count)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
