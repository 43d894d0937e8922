package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// runQuote implements `bpfattest quote --agent ADDR --nonce HEX [--from N]
// [--with-firmware-log] [--out FILE] [--insecure-loopback | --ca F --cert C
// --key K]`: it asks an agent for a quote over the nonce (and its firmware
// event log, with --with-firmware-log) and writes the evidence as JSON (the
// bpfattest.v1.Evidence message in the proto3 JSON mapping: bytes as
// base64, see proto/bpfattest/v1) to FILE, or to stdout without --out.
// The summary goes to stdout with --out, to stderr without.
//
// The evidence is not verified here: `bpfattest verify` does that.
// Exit 0 evidence written; 1 the agent refused or failed; 2 usage.
func runQuote(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("quote", stderr,
		"usage: bpfattest quote --agent ADDR --nonce HEX [--from N] [--with-firmware-log] [--out FILE] [TLS flags]")
	var rf remoteFlags
	rf.register(fs)
	nonceHex := fs.String("nonce", "", fmt.Sprintf("the verifier's nonce, %d to %d bytes in hex (required)", evidence.MinNonceSize, evidence.MaxNonceSize))
	from := fs.Uint64("from", 0, "first log record to return")
	out := fs.String("out", "", "write the evidence JSON here instead of stdout")
	withFirmware := fs.Bool("with-firmware-log", false, "also fetch the machine's firmware event log (the boot chain's evidence)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "bpfattest quote: %v\n", err)
		return exitUsage
	}
	if fs.NArg() != 0 {
		return usage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
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
	ev, err := verifier.FetchEvidence(ctx, pb.NewAttestationServiceClient(conn), nonce, *from, *withFirmware)
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
	if *out == "" {
		if _, err := stdout.Write(js); err != nil {
			fmt.Fprintf(stderr, "bpfattest quote: %v\n", err)
			return exitFailed
		}
	} else {
		if err := os.WriteFile(*out, js, 0o644); err != nil {
			fmt.Fprintf(stderr, "bpfattest quote: %v\n", err)
			return exitFailed
		}
		summary = stdout
	}
	printQuoteSummary(summary, ev, *out)
	return exitOK
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
		fmt.Fprintf(w, "log:          records %d..%d\n", recs[0].RecNum, recs[len(recs)-1].RecNum)
	}
	if n := len(ev.GetFirmwareLog()); n > 0 {
		fmt.Fprintf(w, "firmware log: %d bytes\n", n)
	}
	fmt.Fprintf(w, "batch:        nonce %d of %d\n", ev.GetProof().GetIndex()+1, ev.GetProof().GetSize())
}
