package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/measure"
)

// runLog prints a boot's event log and checks it: strict decoding, every
// record's digests against its content, record numbers, and a replay from
// the boot header's starting values; with --verify-against-pcr, the replay
// against the PCR read from a TPM. Exit 0 when everything holds, 1 when the
// log is invalid or does not match the PCR, 2 on usage errors and
// unreadable input.
func runLog(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("log", stderr,
		"usage: bpfattest log [--dir D | FILE] [--format text|json|json-seq|cel] [--since N] [--verify-against-pcr --tpm SPEC]",
		"       bpfattest log --diff A B [--format text|json]",
		"\nPrints a boot's event log and checks that it replays. Exit 0 when the log is valid (and matches",
		"the PCR, with --verify-against-pcr); 1 when it is not; 2 on usage errors or unreadable input.")
	dir := fs.String("dir", "", "an agent's state directory (bpfattestd --state-dir): print its most recently written boot log (with the in-process simulator: its sim/ subdirectory)")
	format := fs.String("format", "text", "output format: text (one line per record), json (CEL-JSON array), json-seq (CEL-JSON records as an RFC 7464 sequence, as systemd's tpm2-measure.log) or cel (CEL TLV bytes)")
	since := fs.Uint64("since", 0, "print only records with a record number of at least N (the whole log is still checked)")
	verify := fs.Bool("verify-against-pcr", false, "compare the log's replay with the PCR read from the TPM given by --tpm")
	tpmSpec := fs.String("tpm", "", "TPM to read with --verify-against-pcr: /dev/tpmrm0, swtpm:unix:PATH or sim")
	diff := fs.Bool("diff", false, "compare two logs (files or state directories) A B: artifacts, signers and digests in one and not the other")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usageErr := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "bpfattest log: "+format+"\n", args...)
		fs.Usage()
		return exitUsage
	}
	if *diff {
		if *dir != "" || *verify || *since != 0 {
			return usageErr("--diff takes two logs and no --dir, --since or --verify-against-pcr")
		}
		return runLogDiff(fs.Args(), *format, stdout, stderr)
	}
	switch {
	case (*dir == "") == (fs.NArg() == 0):
		return usageErr("give either --dir or one FILE")
	case fs.NArg() > 1:
		return usageErr("one FILE at most")
	case *format != "text" && *format != "json" && *format != "json-seq" && *format != "cel":
		return usageErr("unknown format %q", *format)
	case *verify && *tpmSpec == "":
		return usageErr("--verify-against-pcr needs --tpm")
	case *tpmSpec != "" && !*verify:
		return usageErr("--tpm is only used with --verify-against-pcr")
	case *verify && *tpmSpec == "sim":
		return usageErr("--verify-against-pcr --tpm sim cannot work: an in-process simulator lives and dies inside the agent that started it, " +
			"and the one this command would start holds none of its PCR values. Check such an agent through its quotes: " +
			"bpfattest verify --agent ADDR, or bpfattest quote and verify --evidence")
	}
	path := fs.Arg(0)
	if *dir != "" {
		p, note, err := latestBootLog(*dir)
		if err != nil {
			fmt.Fprintf(stderr, "bpfattest log: %v\n", err)
			return exitUsage
		}
		if note != "" {
			fmt.Fprintf(stderr, "bpfattest log: %s\n", note)
		}
		path = p
	}

	lg, checkErr, err := readLog(path)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest log: %v\n", err)
		return exitUsage
	}
	if err := printRecords(stdout, *format, lg.Records, *since); err != nil {
		fmt.Fprintf(stderr, "bpfattest log: %v\n", err)
		return exitUsage
	}
	if checkErr != nil {
		fmt.Fprintf(stderr, "bpfattest log: %s: INVALID: %v\n", path, checkErr)
		return exitFailed
	}
	if lg.Final == nil {
		fmt.Fprintf(stderr, "bpfattest log: %s: %d records, digests match their contents; no boot header, so no replay\n", path, len(lg.Records))
		if *verify {
			fmt.Fprintln(stderr, "bpfattest log: --verify-against-pcr needs a log that starts with a boot header")
			return exitUsage
		}
		return exitOK
	}
	fmt.Fprintf(stderr, "bpfattest log: %s: %d records replay from the boot header (boot %s, reset count %d, pcr %d)\n",
		path, len(lg.Records), lg.Boot.BootID, lg.Boot.ResetCount, lg.Boot.PCR)
	if !*verify {
		return exitOK
	}
	return verifyAgainstPCR(ctx, stderr, *tpmSpec, lg)
}

// readLog reads a log file. A log that starts with a boot header is read
// as a journal boot log (replayed from the header); any other CEL file is
// decoded and each record's digests checked. checkErr is what makes the log
// invalid; err means the file could not be read at all.
func readLog(path string) (lg *journal.Log, checkErr, err error) {
	b, err := boundedfile.ReadFile(path, maxLogFileSize)
	if err != nil {
		return nil, nil, err
	}
	if first, _, ferr := cel.DecodeRecord(b); ferr == nil && first.Type == cel.BootHeader {
		lg, err := journal.Parse(path, b)
		if lg == nil {
			return nil, nil, err
		}
		return lg, err, nil
	}
	recs, derr := cel.Decode(b)
	lg = &journal.Log{Path: path, Records: recs}
	if derr != nil {
		return lg, derr, nil
	}
	for i := range recs {
		if err := recs[i].VerifyDigests(); err != nil {
			lg.Records = recs[:i]
			return lg, err, nil
		}
		// Each record's number is the previous one's plus its number of
		// events (1, or a batch record's events).
		if i > 0 {
			want, err := recs[i-1].NextRecNum()
			if err != nil {
				lg.Records = recs[:i-1]
				return lg, fmt.Errorf("record %d: %w", i-1, err), nil
			}
			if recs[i].RecNum != want {
				lg.Records = recs[:i]
				return lg, fmt.Errorf("record %d: recnum %d after %d, want %d: %w", i, recs[i].RecNum, recs[i-1].RecNum, want, cel.ErrSequence), nil
			}
		}
	}
	return lg, nil, nil
}

// printRecords prints the records from the one holding event since on (a
// batch record holding it is printed whole).
func printRecords(w io.Writer, format string, recs []cel.Record, since uint64) error {
	for len(recs) > 0 {
		if next, err := recs[0].NextRecNum(); err == nil && next > since {
			break
		}
		recs = recs[1:]
	}
	switch format {
	case "json":
		return cel.WriteJSON(w, recs, measurementJSON)
	case "json-seq":
		return cel.WriteJSONSeq(w, recs, measurementJSON)
	case "cel":
		b, err := cel.Encode(recs)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return cel.WriteText(w, recs, recordText)
}

// verifyAgainstPCR reads the log's PCR from the TPM and compares it with
// the log's replay, bank by bank.
func verifyAgainstPCR(ctx context.Context, stderr io.Writer, spec string, lg *journal.Log) int {
	dev, err := tpm.Open(ctx, spec)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest log: %v\n", err)
		return exitUsage
	}
	defer dev.Close()
	pcr, err := dev.ReadPCR(int(lg.Boot.PCR))
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest log: %v\n", err)
		return exitUsage
	}
	code := exitOK
	banks := make([]crypto.Hash, 0, len(pcr))
	for h := range pcr {
		banks = append(banks, h)
	}
	if sorted, ok := cel.SortBanks(banks); ok {
		banks = sorted
	}
	for _, h := range banks {
		verdict := "ok"
		if !bytes.Equal(pcr[h], lg.Final[h]) {
			verdict, code = "MISMATCH", exitFailed
		}
		fmt.Fprintf(stderr, "pcr %d %s: tpm %s log %s %s\n", lg.Boot.PCR, cel.BankName(h),
			hex.EncodeToString(pcr[h]), hex.EncodeToString(lg.Final[h]), verdict)
	}
	for h := range lg.Final {
		if _, ok := pcr[h]; !ok {
			fmt.Fprintf(stderr, "pcr %d %s: the log has this bank, the tpm does not: MISMATCH\n", lg.Boot.PCR, cel.BankName(h))
			code = exitFailed
		}
	}
	if code != exitOK {
		fmt.Fprintln(stderr, "bpfattest log: the log does not replay to the pcr")
	}
	return code
}

// measurementJSON renders a BPF measurement record for the JSON export.
func measurementJSON(t cel.ContentType, content []byte) any {
	if t != cel.BPFMeasurement {
		return nil
	}
	m, err := measure.ParseMeasurement(content)
	if err != nil {
		return map[string]string{"parse_error": err.Error()}
	}
	type program struct {
		Name   string `json:"name"`
		Type   uint32 `json:"type"`
		SHA256 string `json:"sha256"`
	}
	out := struct {
		Name         string    `json:"name"`
		Scheme       string    `json:"scheme"`
		Verdict      string    `json:"verdict"`
		LoaderSHA256 string    `json:"loader_sha256"`
		DataSHA256   string    `json:"data_sha256"`
		Signer       string    `json:"signer,omitempty"`
		Programs     []program `json:"programs"`
	}{Name: m.Name, Scheme: m.Scheme.String(), Verdict: m.Verdict.String(),
		LoaderSHA256: hex.EncodeToString(m.LoaderSHA256[:]), DataSHA256: hex.EncodeToString(m.DataSHA256[:])}
	if m.Signer != nil {
		out.Signer = m.Signer.Subject
	}
	for _, p := range m.Programs {
		out.Programs = append(out.Programs, program{Name: p.Name, Type: p.Type, SHA256: hex.EncodeToString(p.Digest[:])})
	}
	return out
}
