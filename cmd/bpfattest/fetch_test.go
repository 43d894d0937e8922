package main

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestLogPastQuoteLimit runs a real agent whose log is more than one quote
// carries (--max-quote-log 4096, less than eight loads' records). A quote
// from record 0 is OUT_OF_RANGE; verify and quote then read the records
// with Events, quote the rest and join them, and the evidence verifies as
// one: the verifier is compliant on first contact, the quote command's
// evidence starts at record 0 and passes attest.Verify. (The kernel is
// shared: programs others load keep adding records between the reads and
// the quote; the tail the quote carries stays well under the limit.)
func TestLogPastQuoteLimit(t *testing.T) {
	a := spawnAgent(t, "--trust", testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem"), "--max-quote-log", "4096")
	for range 8 {
		loadInto(t, a, "headers/counter.signed.lskel.h", exitOK)
	}

	conn, err := grpc.NewClient("passthrough:///"+a.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nonce, _ := hex.DecodeString(testNonce)
	_, err = pb.NewAttestationServiceClient(conn).Quote(t.Context(), &pb.QuoteRequest{Nonce: nonce})
	if status.Code(err) != codes.OutOfRange || !strings.Contains(status.Convert(err).Message(), "Events") {
		t.Fatalf("quote of the whole log past the limit: %v, want OUT_OF_RANGE pointing to Events", err)
	}

	policy := writeTemp(t, "policy.yaml", signedPolicy)
	code, v, stderr := verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--tofu")
	if code != exitCompliant || v.FromRecord != 0 || len(v.Programs) != 8 || v.Programs[0].Verdict != "OK" {
		t.Fatalf("verify: exit %d, verdict %+v\n%s", code, v, stderr)
	}

	var stdout, errs bytes.Buffer
	if code := runQuote(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--nonce", testNonce}, &stdout, &errs); code != exitOK {
		t.Fatalf("quote: exit %d\n%s", code, errs.String())
	}
	var m pb.Evidence
	if err := protojson.Unmarshal(stdout.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	recs, err := cel.Decode(m.GetLog())
	if err != nil || m.GetFromRecord() != 0 || len(recs) == 0 || recs[0].RecNum != 0 {
		t.Fatalf("evidence from record %d with %d records (%v), want the log from record 0", m.GetFromRecord(), len(recs), err)
	}
	ev, err := evidence.FromProto(&m)
	if err != nil {
		t.Fatal(err)
	}
	res, err := attest.Verify(ev, attest.VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic, BootPCRs: attest.DefaultBootPCRs()})
	if err != nil {
		t.Fatalf("joined evidence does not verify: %v", err)
	}
	if next, _ := recs[len(recs)-1].NextRecNum(); res.State().NextRecord() != next {
		t.Errorf("verified up to record %d, the evidence holds %d", res.State().NextRecord(), next)
	}

	// The verifier holds at most --max-log bytes of log for the host:
	// less than the log is a clear failure, not a larger buffer.
	limit := int64(len(m.GetLog()) / 2)
	stdout.Reset()
	errs.Reset()
	code = runQuote(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--nonce", testNonce, "--max-log", strconv.FormatInt(limit, 10)}, &stdout, &errs)
	if code != exitFailed || !strings.Contains(errs.String(), "more than "+strconv.FormatInt(limit, 10)+" bytes") {
		t.Errorf("quote with --max-log %d of a %d-byte log: exit %d\n%s", limit, len(m.GetLog()), code, errs.String())
	}
	code, v, stderr = verifyJSON(t, "--agent", a.listen, "--insecure-loopback", "--policy", policy, "--tofu", "--max-log", strconv.FormatInt(limit, 10))
	if code != exitUnverified || !strings.Contains(v.Reason, "longer than the verifier's limit") {
		t.Errorf("verify with --max-log %d: exit %d, reason %q\n%s", limit, code, v.Reason, stderr)
	}
}
