package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bpfattest/bpfattest/cel"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

const testNonce = "00112233445566778899aabbccddeeff0011223344556677"

// TestQuoteCLI drives `bpfattest quote` against a real bpfattestd over
// mutual TLS 1.3: the evidence file is the Evidence message in proto3
// JSON with base64 bytes, its log decodes, and the summary names the PCR
// and the records. Without a client certificate the agent refuses it.
func TestQuoteCLI(t *testing.T) {
	ca := testutil.NewCert(t, "ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	client := testutil.NewCert(t, "verifier", ca, false)
	a := startAgentProc(t, "--listen", "127.0.0.1:0", "--tls-cert", server.CertFile, "--tls-key", server.KeyFile,
		"--client-ca", ca.CertFile)
	out := filepath.Join(t.TempDir(), "evidence.json")
	var stdout, stderr bytes.Buffer
	code := runQuote(t.Context(), []string{"--agent", a.listen, "--nonce", testNonce, "--out", out,
		"--ca", ca.CertFile, "--cert", client.CertFile, "--key", client.KeyFile, "--server-name", "localhost"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	js, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ev pb.Evidence
	if err := protojson.Unmarshal(js, &ev); err != nil {
		t.Fatalf("evidence file: %v\n%s", err, js)
	}
	var raw map[string]any
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"akPublic", "attest", "signature", "log"} {
		s, _ := raw[field].(string)
		if b, err := base64.StdEncoding.DecodeString(s); err != nil || len(b) == 0 {
			t.Errorf("field %s is not non-empty base64: %q", field, s)
		}
	}
	recs, err := cel.Decode(ev.GetLog())
	if err != nil || len(recs) == 0 {
		t.Fatalf("log: %d records, %v", len(recs), err)
	}
	if ev.GetPcr() != 14 || ev.GetProof().GetSize() != 1 {
		t.Errorf("pcr %d proof %v", ev.GetPcr(), ev.GetProof())
	}
	sum := stdout.String()
	if fieldOf(t, sum, "pcr") != "14" || !strings.HasPrefix(fieldOf(t, sum, "log"), "records 0..") {
		t.Errorf("summary:\n%s", sum)
	}

	t.Run("no client certificate", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := runQuote(t.Context(), []string{"--agent", a.listen, "--nonce", testNonce, "--ca", ca.CertFile, "--server-name", "localhost"}, &stdout, &stderr)
		if code != exitFailed || stdout.Len() != 0 {
			t.Fatalf("exit %d, want %d\n%s%s", code, exitFailed, stdout.String(), stderr.String())
		}
	})
}

// TestQuoteCLIInsecureLoopback writes the evidence to stdout from an agent
// served without TLS on loopback.
func TestQuoteCLIInsecureLoopback(t *testing.T) {
	a := startAgentProc(t, "--listen", "127.0.0.1:0", "--insecure-loopback")
	var stdout, stderr bytes.Buffer
	code := runQuote(t.Context(), []string{"--agent", a.listen, "--insecure-loopback", "--nonce", testNonce, "--from", "1"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var ev pb.Evidence
	if err := protojson.Unmarshal(stdout.Bytes(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetFromRecord() != 1 {
		t.Errorf("from record %d, want 1", ev.GetFromRecord())
	}
	if !strings.Contains(stderr.String(), "pcr:") {
		t.Errorf("summary not on stderr: %s", stderr.String())
	}
}

func TestQuoteUsage(t *testing.T) {
	long := hex.EncodeToString(make([]byte, 65))
	for name, args := range map[string][]string{
		"no agent":           {"--nonce", testNonce},
		"no nonce":           {"--agent", "127.0.0.1:1", "--insecure-loopback"},
		"short nonce":        {"--agent", "127.0.0.1:1", "--insecure-loopback", "--nonce", "0011"},
		"long nonce":         {"--agent", "127.0.0.1:1", "--insecure-loopback", "--nonce", long},
		"odd hex":            {"--agent", "127.0.0.1:1", "--insecure-loopback", "--nonce", testNonce + "0"},
		"insecure remote":    {"--agent", "192.0.2.1:7433", "--insecure-loopback", "--nonce", testNonce},
		"insecure with cert": {"--agent", "127.0.0.1:1", "--insecure-loopback", "--cert", "c.pem", "--nonce", testNonce},
		"cert without key":   {"--agent", "127.0.0.1:1", "--cert", "c.pem", "--nonce", testNonce},
		"positional":         {"--agent", "127.0.0.1:1", "--nonce", testNonce, "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runQuote(t.Context(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%s: exit %d, want %d: %s", name, code, exitUsage, stderr.String())
		}
	}
}
