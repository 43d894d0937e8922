package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/atomicfile"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// runQuote implements `bpfattest quote --agent ADDR --nonce HEX [--from N]
// [--with-firmware-log] [--format json|tpm2-tools] [--out FILE|DIR] [--ak FILE]
// [--insecure-loopback | --ca F --cert C --key K]`: it asks an agent for a
// quote over the nonce (and its firmware event log, with
// --with-firmware-log) and writes the evidence as JSON (the
// bpfattest.v1.Evidence message in the proto3 JSON mapping: bytes as
// base64, see proto/bpfattest/v1) to FILE, or to stdout without --out.
// With --format tpm2-tools, --out is a directory that receives the quote in
// the files tpm2_checkquote reads (verifier.TPM2Tools), the qualifying data
// derived from the nonce, and evidence.json; the tpm2_checkquote command
// line is printed. The summary goes to stdout with --out, to stderr without.
//
// The evidence is not verified here: `bpfattest verify` does that, and
// `bpfattest verify --evidence FILE --nonce HEX` later.
// Exit 0 evidence written; 1 the agent refused or failed; 2 usage.
func runQuote(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("quote", stderr,
		"usage: bpfattest quote --agent ADDR --nonce HEX [--from N] [--with-firmware-log] [--out FILE] [TLS flags]",
		"       bpfattest quote --agent ADDR --nonce HEX --format tpm2-tools --out DIR [--ak FILE] [TLS flags]")
	var rf remoteFlags
	rf.register(fs)
	nonceHex := fs.String("nonce", "", fmt.Sprintf("the verifier's nonce, %d to %d bytes in hex (required)", evidence.MinNonceSize, evidence.MaxNonceSize))
	from := fs.Uint64("from", 0, "first log record to return")
	out := fs.String("out", "", "write the evidence JSON here instead of stdout; with --format tpm2-tools, the directory for its files (required)")
	withFirmware := fs.Bool("with-firmware-log", false, "also fetch the machine's firmware event log (the boot chain's evidence)")
	format := fs.String("format", "json", "json (the evidence) or tpm2-tools (the files tpm2_checkquote reads, and evidence.json)")
	akFile := fs.String("ak", "", "with --format tpm2-tools: the pinned AK (TPMT_PUBLIC, as for verify --ak) to write instead of the evidence's own")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "bpfattest quote: %v\n", err)
		return exitUsage
	}
	switch {
	case fs.NArg() != 0:
		return usage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	case *format != "json" && *format != "tpm2-tools":
		return usage(fmt.Errorf("--format %q: want json or tpm2-tools", *format))
	case *format == "tpm2-tools" && *out == "":
		return usage(errors.New("--format tpm2-tools needs --out DIR"))
	case *akFile != "" && *format != "tpm2-tools":
		return usage(errors.New("--ak is only used with --format tpm2-tools"))
	}
	var pinnedAK []byte
	if *akFile != "" {
		var err error
		if pinnedAK, err = verifier.ReadAKFile(*akFile); err != nil {
			return usage(err)
		}
	}
	nonce, err := hex.DecodeString(*nonceHex)
	if err != nil {
		return usage(fmt.Errorf("--nonce: %w", err))
	}
	if err := evidence.CheckNonce(nonce); err != nil {
		return usage(fmt.Errorf("--nonce: %w", err))
	}
	conn, code, ok := rf.connect(stderr, "quote", exitFailed)
	if !ok {
		return code
	}
	defer conn.Close()
	ev, err := verifier.FetchEvidence(ctx, pb.NewAttestationServiceClient(conn), nonce, *from, *withFirmware, rf.limits())
	if err != nil {
		st := status.Convert(err)
		fmt.Fprintf(stderr, "bpfattest quote: %s: %s\n", st.Code(), st.Message())
		return exitFailed
	}
	js, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(ev)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest quote: encode evidence: %v\n", err)
		return exitFailed
	}
	js = append(js, '\n')
	summary := stderr
	switch {
	case *format == "tpm2-tools":
		if err := writeTPM2Tools(stdout, *out, ev, js, nonce, pinnedAK); err != nil {
			fmt.Fprintf(stderr, "bpfattest quote: %v\n", err)
			return exitFailed
		}
		summary = stdout
	case *out == "":
		if _, err := stdout.Write(js); err != nil {
			fmt.Fprintf(stderr, "bpfattest quote: %v\n", err)
			return exitFailed
		}
	default:
		if err := atomicfile.Write(*out, js, 0o644); err != nil {
			fmt.Fprintf(stderr, "bpfattest quote: %v\n", err)
			return exitFailed
		}
		summary = stdout
	}
	printQuoteSummary(summary, ev, *out)
	return exitOK
}

// writeTPM2Tools writes the quote in tpm2-tools' files, and the evidence
// JSON, into dir (created if missing), and prints tpm2_checkquote's
// command line.
func writeTPM2Tools(w io.Writer, dir string, m *pb.Evidence, js, nonce, pinnedAK []byte) error {
	ev, err := evidence.FromProto(m)
	if err != nil {
		return err
	}
	ak, which := pinnedAK, "pinned by --ak"
	if ak == nil {
		ak, which = ev.AKPublic, "the evidence's own: it proves the quote consistent, not whose it is (pin it with --ak FILE)"
	}
	t, err := verifier.ExportTPM2Tools(ev, nonce, ak)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	t.Files["evidence.json"] = js
	for _, name := range slices.Sorted(maps.Keys(t.Files)) {
		if err := atomicfile.Write(filepath.Join(dir, name), t.Files[name], 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "tpm2-tools:   %s (quote.msg, quote.sig, quote.pcrs, ak.pem, ak.pub, qualification, nonce, evidence.json)\n", dir)
	fmt.Fprintf(w, "ak:           %s\n", which)
	fmt.Fprintf(w, "check with:   tpm2_checkquote %s\n", strings.Join(t.Args(dir), " "))
	return nil
}

// printQuoteSummary describes evidence without verifying it.
func printQuoteSummary(w io.Writer, ev *pb.Evidence, out string) {
	if out != "" {
		fmt.Fprintf(w, "evidence:     %s (unverified)\n", out)
	}
	fmt.Fprintf(w, "pcr:          %d\n", ev.GetPcr())
	for _, v := range ev.GetPcrs() {
		name := fmt.Sprintf("alg %#04x", v.GetHashAlg())
		if h, ok := cel.HashForAlg(uint16(v.GetHashAlg())); ok && v.GetHashAlg() <= 0xffff {
			name = cel.BankName(h)
		}
		fmt.Fprintf(w, "  %-8s %2d: %x\n", name, v.GetIndex(), v.GetDigest())
	}
	recs, err := cel.Decode(ev.GetLog())
	switch {
	case err != nil:
		fmt.Fprintf(w, "log:          %d bytes, undecodable: %v\n", len(ev.GetLog()), err)
	case len(recs) == 0:
		fmt.Fprintf(w, "log:          no records from %d\n", ev.GetFromRecord())
	default:
		last := recs[len(recs)-1].RecNum
		if next, err := recs[len(recs)-1].NextRecNum(); err == nil {
			last = next - 1 // a batch record's last event
		}
		fmt.Fprintf(w, "log:          records %d..%d\n", recs[0].RecNum, last)
	}
	if n := len(ev.GetFirmwareLog()); n > 0 {
		fmt.Fprintf(w, "firmware log: %d bytes\n", n)
	}
	fmt.Fprintf(w, "batch:        nonce %d of %d\n", ev.GetProof().GetIndex()+1, ev.GetProof().GetSize())
}
