package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	"github.com/bpfattest/bpfattest/verifier"
)

// runScan implements `bpfattest scan --inventory FILE --policy P
// [--concurrency N] [--timeout D] [--state-dir DIR] [--tofu]
// [--format table|json|csv] [--out FILE]`: verify every host of the
// inventory as verify does, a bounded number at a time, and report a
// summary and each host's verdict and reasons. Exit codes as verify's,
// the worst host's: 2 when any host could not be verified or reached, else
// 1 when any is non-compliant, else 0.
func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("scan", stderr,
		"usage: bpfattest scan --inventory FILE --policy P [--concurrency N] [--timeout D] [--state-dir DIR] [--tofu]",
		"                      [--format table|json|csv|ear] [--ear-key KEY [--ear-alg ALG] [--ear-validity D]] [--out FILE] [TLS flags]",
		"\nVerifies every host of an inventory. Exit 0 all compliant, 1 some non-compliant, 2 some could not be",
		"verified or reached (or usage).")
	var rf remoteFlags
	rf.registerTLS(fs)
	inventory := fs.String("inventory", "", "hosts to scan: YAML (hosts: [{name, address, state, ak}]) or lines NAME ADDRESS [state=FILE] [ak=FILE] (required)")
	policyFile := fs.String("policy", "", "policy YAML (required)")
	allowSim := allowSimulatorFlag(fs)
	concurrency := fs.Int("concurrency", 16, "hosts verified at once")
	timeout := fs.Duration("timeout", 30*time.Second, "time allowed per host")
	stateDir := fs.String("state-dir", "", "directory of the hosts' state files (NAME.json) when the inventory names none")
	tofu := fs.Bool("tofu", false, "first contact: trust the AK each unpinned host presents")
	format := fs.String("format", "table", "report format: table, json, csv, or ear (one signed EAT Attestation Result per host and line: docs/ear.md; needs --ear-key)")
	var ef earFlags
	ef.register(fs)
	out := fs.String("out", "", "write the report here instead of stdout")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := usageError(stderr, "scan")
	switch {
	case fs.NArg() != 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case *inventory == "" || *policyFile == "":
		return usage("--inventory and --policy are required")
	case *concurrency < 1:
		return usage("--concurrency %d, want at least 1", *concurrency)
	case *timeout <= 0:
		return usage("--timeout %v, want a positive duration", *timeout)
	case *format != "table" && *format != "json" && *format != "csv" && *format != "ear":
		return usage("unknown format %q", *format)
	}
	pol, polBytes, err := readPolicyFile(*policyFile)
	if err != nil {
		return usage("%v", err)
	}
	if *format == "ear" {
		if err := ef.load(polBytes, *allowSim && !pol.AllowSimulator); err != nil {
			return usage("%v", err)
		}
	}
	pol.AllowSimulator = pol.AllowSimulator || *allowSim
	hosts, err := parseInventory(*inventory, *stateDir)
	if err != nil {
		return usage("%v", err)
	}
	if err := rf.clone("127.0.0.1:1").check(); err != nil {
		return usage("%v", err)
	}
	prog := newProgress(stderr, len(hosts))
	start := time.Now()
	verdicts := verifier.Scan(ctx, hosts, verifier.ScanOptions{
		Policy:      pol,
		Dial:        func(addr string) (*grpc.ClientConn, error) { return dialRemote(rf.clone(addr)) },
		Concurrency: *concurrency,
		Timeout:     *timeout,
		TOFU:        *tofu,
		Done:        prog.finishHost,
	})
	prog.finish()
	rep := verifier.NewReport(verdicts, time.Since(start))

	w := stdout
	var f *os.File
	if *out != "" {
		if f, err = os.Create(*out); err != nil {
			fmt.Fprintf(stderr, "bpfattest scan: %v\n", err)
			return exitUnverified
		}
		w = f
	}
	switch *format {
	case "json":
		err = writeJSON(w, rep)
	case "csv":
		err = writeScanCSV(w, rep)
	case "ear":
		err = writeScanEAR(w, rep, &ef)
	default:
		err = writeScanTable(w, rep)
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if *format != "table" || err != nil {
			fmt.Fprintln(stderr, summaryLine(rep))
		} else {
			fmt.Fprintln(stdout, summaryLine(rep))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest scan: %v\n", err)
		return exitUnverified
	}
	return scanExitCode(rep)
}

// clone returns the connection flags for another agent address.
func (r remoteFlags) clone(agent string) *remoteFlags {
	r.agent = agent
	return &r
}

// check validates the TLS flags once, before any host is dialled (gRPC
// connects lazily: nothing is sent).
func (r *remoteFlags) check() error {
	conn, err := dialRemote(r)
	if err != nil {
		return err
	}
	return conn.Close()
}

// scanExitCode is the worst host's exit code: 2 when any host could not
// be verified or reached, else 1 when any is non-compliant, else 0.
func scanExitCode(r *verifier.Report) int {
	switch {
	case r.Summary.Unreachable+r.Summary.Unverified > 0:
		return exitUnverified
	case r.Summary.NonCompliant > 0:
		return exitNonCompliant
	}
	return exitCompliant
}

func summaryLine(r *verifier.Report) string {
	s := r.Summary
	return fmt.Sprintf("scanned %d hosts in %s: %d compliant, %d non-compliant, %d unreachable, %d could not verify",
		s.Hosts, r.Duration, s.Compliant, s.NonCompliant, s.Unreachable, s.Unverified)
}

// writeScanTable writes the summary table, one row per host, then each
// host's reasons.
func writeScanTable(w io.Writer, r *verifier.Report) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tHOSTS")
	s := r.Summary
	for _, row := range []struct {
		name string
		n    int
	}{{verifier.StatusCompliant, s.Compliant}, {verifier.StatusNonCompliant, s.NonCompliant}, {verifier.StatusUnreachable, s.Unreachable}, {verifier.StatusUnverified, s.Unverified}} {
		fmt.Fprintf(tw, "%s\t%d\n", row.name, row.n)
	}
	fmt.Fprintf(tw, "total\t%d\n", s.Hosts)
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tSTATUS\tBOOT\tLOADS\tVIOLATIONS")
	for _, v := range r.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", v.Host, v.Agent, v.Status, orDash(v.BootID), len(v.Programs)+len(v.Pending), len(v.Violations))
	}
	tw.Flush()
	first := true
	for _, v := range r.Hosts {
		if v.Status == verifier.StatusCompliant {
			continue
		}
		if first {
			b.WriteString("\nreasons:\n")
			first = false
		}
		fmt.Fprintf(&b, "%s (%s):\n", v.Host, v.Status)
		for _, line := range v.Reasons() {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	fmt.Fprintf(&b, "\n%s\n", summaryLine(r))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeScanCSV writes one row per host: host, address, status, boot id,
// loads, violations, and the reasons joined by "; ".
func writeScanCSV(w io.Writer, r *verifier.Report) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"host", "address", "status", "boot_id", "loads", "violations", "reasons"})
	for _, v := range r.Hosts {
		cw.Write([]string{v.Host, v.Agent, v.Status, v.BootID, strconv.Itoa(len(v.Programs) + len(v.Pending)),
			strconv.Itoa(len(v.Violations)), strings.Join(v.Reasons(), "; ")})
	}
	cw.Flush()
	return cw.Error()
}

// writeScanEAR writes one signed EAR per host, one per line, in the
// inventory's order (each token's sub claim names its host).
func writeScanEAR(w io.Writer, r *verifier.Report, ef *earFlags) error {
	var b strings.Builder
	for _, v := range r.Hosts {
		tok, err := ef.token(v)
		if err != nil {
			return fmt.Errorf("%s: %w", v.Host, err)
		}
		b.WriteString(tok + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
