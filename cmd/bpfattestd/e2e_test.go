package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/agent/service"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

const signedCounter = "headers/counter.signed.lskel.h"

func trustArg(t *testing.T) string { return testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem") }

func newNonce(t *testing.T) []byte {
	t.Helper()
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLoadQuoteEvents drives a real bpfattestd on the simulator: a signed
// fixture loads through the unix socket, a quote over TCP with mutual TLS
// is accepted by tpm2_checkquote and its PCR value replays from the served
// log, and the Events stream serves the same records and follows new ones.
func TestLoadQuoteEvents(t *testing.T) {
	ca := testutil.NewCert(t, "ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	verifier := testutil.NewCert(t, "verifier", ca, false)
	d := startDaemon(t, "--trust", trustArg(t), "--listen", "127.0.0.1:0",
		"--tls-cert", server.CertFile, "--tls-key", server.KeyFile, "--client-ca", ca.CertFile)
	local := d.local(t)
	remote := d.remote(t, clientTLS(ca, verifier, tls.VersionTLS13))
	ctx := t.Context()

	lr, err := local.Load(ctx, &pb.LoadRequest{Artifact: fixture(t, signedCounter)})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if lr.GetOutcome() != "loaded" || lr.GetVerdict() != "OK" || !lr.GetAccepted() || len(lr.GetPrograms()) == 0 {
		t.Fatalf("load response %v", lr)
	}
	for _, p := range lr.GetPrograms() {
		if p.GetId() == 0 || len(p.GetTag()) != 8 {
			t.Errorf("program %v without id or tag", p)
		}
	}
	st, err := local.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetRecords() <= lr.GetResultRecord() || st.GetPcr() != 14 {
		t.Errorf("status %v after result record %d", st, lr.GetResultRecord())
	}

	id, err := remote.Identity(ctx, &pb.IdentityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	nonce := newNonce(t)
	ev, err := remote.Quote(ctx, &pb.QuoteRequest{Nonce: nonce})
	if err != nil {
		t.Fatalf("quote: %v", err)
	}
	if !bytes.Equal(ev.GetAkPublic(), id.GetAkPublic()) {
		t.Error("quote's AK differs from the identity's")
	}
	recs, err := cel.Decode(ev.GetLog())
	if err != nil {
		t.Fatal(err)
	}
	if next, _ := recs[len(recs)-1].NextRecNum(); next <= lr.GetResultRecord() {
		t.Fatalf("log of %d events lacks the load's result record %d", next, lr.GetResultRecord())
	}
	checkReplay(t, ev, recs)
	checkquote(t, ev, evidence.QualifyingData(nonce))

	// A log slice from a record on replays from the values before it.
	part, err := remote.Quote(ctx, &pb.QuoteRequest{Nonce: newNonce(t), FromRecord: lr.GetMeasurementRecord()})
	if err != nil {
		t.Fatal(err)
	}
	if prs, err := cel.Decode(part.GetLog()); err != nil || len(prs) == 0 || prs[0].RecNum != lr.GetMeasurementRecord() {
		t.Fatalf("slice from %d: %d records, err %v", lr.GetMeasurementRecord(), len(prs), err)
	}

	// Events without follow: exactly the log.
	stream, err := remote.Events(ctx, &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		e, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.GetRecord()...)
	}
	if !bytes.HasPrefix(got, ev.GetLog()) {
		t.Error("Events records differ from the quoted log")
	}

	// Events with follow: the existing records, then a new load's.
	fctx, cancel := ctxWithCancel(t)
	defer cancel()
	follow, err := remote.Events(fctx, &pb.EventsRequest{FromRecord: st.GetRecords(), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	lr2, err := local.Load(ctx, &pb.LoadRequest{Artifact: fixture(t, "headers/pair.signed.lskel.h")})
	if err != nil {
		t.Fatalf("second load: %v", err)
	}
	for want := st.GetRecords(); want <= lr2.GetResultRecord(); {
		e, err := follow.Recv()
		if err != nil {
			t.Fatalf("follow: %v", err)
		}
		if e.GetRecnum() != want {
			t.Fatalf("followed record %d, want %d", e.GetRecnum(), want)
		}
		r, _, err := cel.DecodeRecord(e.GetRecord())
		if err != nil || r.RecNum != want {
			t.Fatalf("followed record %d does not decode: %v", want, err)
		}
		if want, err = r.NextRecNum(); err != nil { // a batch record carries several events
			t.Fatal(err)
		}
	}

	// SIGTERM ends the following stream and the daemon exits cleanly,
	// removing its socket.
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	for {
		if _, err := follow.Recv(); err != nil {
			break
		}
	}
	if _, err := os.Stat(d.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// checkReplay replays the served log from the PCR's reset value and
// compares every quoted bank with the PCR values the evidence carries.
func checkReplay(t *testing.T, ev *pb.Evidence, recs []cel.Record) {
	t.Helper()
	start := map[crypto.Hash][]byte{}
	quoted := map[crypto.Hash][]byte{}
	for _, v := range ev.GetPcrs() {
		h, ok := cel.HashForAlg(uint16(v.GetHashAlg()))
		if !ok {
			t.Fatalf("unknown bank %#x", v.GetHashAlg())
		}
		if v.GetIndex() == ev.GetPcr() {
			quoted[h] = v.GetDigest()
		}
	}
	if len(quoted) == 0 || len(recs) == 0 {
		t.Fatal("evidence carries no value of the agent's PCR, or no records")
	}
	// The log carries every active bank; the quote may cover fewer.
	for _, h := range recs[0].Banks() {
		start[h] = make([]byte, h.Size())
	}
	rp, err := cel.NewReplayer(start)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := rp.Add(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	got := rp.Values()
	for h, want := range quoted {
		if !bytes.Equal(got[h], want) {
			t.Errorf("%s: log replays to %x, quote says %x", cel.BankName(h), got[h], want)
		}
	}
}

// checkquote runs tpm2-tools' independent quote checker on the evidence,
// and proves it refuses other qualifying data.
func checkquote(t *testing.T, ev *pb.Evidence, qualifying []byte) {
	t.Helper()
	bin := testutil.RequireTool(t, "tpm2_checkquote")
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.GetAkPublic())
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The C-struct PCR file: the agent's PCR and the boot PCRs are more
	// values than tpm2-tools' raw format carries.
	var vals []tpm.PCRValue
	for _, v := range ev.GetPcrs() {
		h, _ := cel.HashForAlg(uint16(v.GetHashAlg()))
		vals = append(vals, tpm.PCRValue{Bank: h, Index: int(v.GetIndex()), Digest: v.GetDigest()})
	}
	pcrs := tpmtest.CheckquotePCRFile(vals)
	files := map[string][]byte{
		"ak.pem":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
		"quote.msg": ev.GetAttest(),
		"quote.sig": ev.GetSignature(),
		"pcrs.bin":  pcrs,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(qual []byte) ([]byte, error) {
		return exec.CommandContext(t.Context(), bin,
			"-u", filepath.Join(dir, "ak.pem"), "-m", filepath.Join(dir, "quote.msg"),
			"-s", filepath.Join(dir, "quote.sig"), "-f", filepath.Join(dir, "pcrs.bin"),
			"-g", "sha256", "-q", hex.EncodeToString(qual)).CombinedOutput()
	}
	if out, err := run(qualifying); err != nil {
		t.Fatalf("tpm2_checkquote: %v\n%s", err, out)
	}
	bad := bytes.Clone(qualifying)
	bad[0] ^= 1
	if out, err := run(bad); err == nil {
		t.Fatalf("tpm2_checkquote accepted other qualifying data\n%s", out)
	}
}

// TestRemoteClientAuth proves the remote API's TLS policy on the running
// daemon: under an allowlist only the listed certificate is served;
// clients without a certificate, with another one, or speaking TLS 1.2 are
// refused before any handler runs.
func TestRemoteClientAuth(t *testing.T) {
	ca := testutil.NewCert(t, "ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	allowed := testutil.NewCert(t, "allowed", ca, false)
	other := testutil.NewCert(t, "other", ca, false)
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--tls-cert", server.CertFile, "--tls-key", server.KeyFile,
		"--client-allow", service.Fingerprint(allowed.Cert.Raw))
	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"allowed", clientTLS(ca, allowed, tls.VersionTLS13), true},
		{"no certificate", clientTLS(ca, nil, tls.VersionTLS13), false},
		{"other certificate", clientTLS(ca, other, tls.VersionTLS13), false},
		{"allowed over tls 1.2", clientTLS(ca, allowed, tls.VersionTLS12), false},
		{"no tls", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.remote(t, tt.cfg).Identity(t.Context(), &pb.IdentityRequest{})
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatal("served")
				}
				if c := status.Code(err); c != codes.Unavailable {
					t.Fatalf("code %v (%v), want Unavailable from the failed handshake", c, err)
				}
			}
		})
	}
}

// TestRemoteErrors proves the codes a verifier sees from the running
// daemon: a bad nonce is InvalidArgument, a record past the log's end is
// InvalidArgument, a client past its activation rate is
// ResourceExhausted, and quotes have no rate per client (the old
// --quote-rate is accepted and ignored).
func TestRemoteErrors(t *testing.T) {
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--insecure-loopback", "--activate-rate", "0.0001", "--activate-burst", "1",
		"--quote-rate", "0.0001", "--quote-burst", "1")
	remote := d.remote(t, nil)
	ctx := t.Context()
	if _, err := remote.Quote(ctx, &pb.QuoteRequest{Nonce: []byte("short")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("short nonce: %v, want InvalidArgument", err)
	}
	s, err := remote.Events(ctx, &pb.EventsRequest{FromRecord: 1 << 40})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("events past the end: %v, want InvalidArgument", err)
	}
	for i := range 3 {
		if _, err := remote.Quote(ctx, &pb.QuoteRequest{Nonce: newNonce(t)}); err != nil {
			t.Fatalf("quote %d: %v", i, err)
		}
	}
	// A garbage credential passes the rate once (and is refused by the
	// TPM's side), then the rate refuses the next before any TPM work.
	bad := &pb.ActivateCredentialRequest{AkPublic: []byte("x"), CredentialBlob: []byte("x"), EncryptedSecret: []byte("x")}
	if _, err := remote.ActivateCredential(ctx, bad); status.Code(err) == codes.ResourceExhausted {
		t.Fatalf("first activation: %v, want it past the rate", err)
	}
	if _, err := remote.ActivateCredential(ctx, bad); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("second activation within the rate's refill time: %v, want ResourceExhausted", err)
	}
}

// TestLocalRefusal proves a refused load (an unsigned artifact without
// --allow-unsigned) is FailedPrecondition and still tells the client what
// was recorded.
func TestLocalRefusal(t *testing.T) {
	d := startDaemon(t, "--trust", trustArg(t))
	_, err := d.local(t).Load(t.Context(), &pb.LoadRequest{Artifact: fixture(t, "headers/counter.lskel.h")})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("unsigned load: %v, want FailedPrecondition", err)
	}
	if len(st.Details()) != 1 {
		t.Fatalf("refusal without the load response: %v", st.Details())
	}
	lr := st.Details()[0].(*pb.LoadResponse)
	if lr.GetOutcome() != "refused" || lr.GetVerdict() != "UNSIGNED" || lr.GetResultRecord() <= lr.GetMeasurementRecord() {
		t.Errorf("refusal detail %v", lr)
	}
	if _, err := d.local(t).Load(t.Context(), &pb.LoadRequest{Artifact: []byte("not an lskel")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("garbage artifact: %v, want InvalidArgument", err)
	}
}

// TestMetrics scrapes the metrics endpoint after a load and a quote: the
// scrape passes promtool's lint (`promtool check metrics`, Prometheus' own
// checker), and carries the agent's metrics under their names, the
// journal-writable gauge, build information, the Go runtime and process
// collectors, per-RPC counts and latencies of both APIs, and the services'
// budgets as the flags set them.
func TestMetrics(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	d := startDaemon(t, "--trust", trustArg(t), "--metrics", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--insecure-loopback",
		"--identity-rate", "7", "--stall-timeout", "9s", "--quote-tpm-share", "0.3", "--max-quote-calls-per-peer", "100")
	if _, err := d.local(t).Load(t.Context(), &pb.LoadRequest{Artifact: fixture(t, signedCounter)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.remote(t, nil).Quote(t.Context(), &pb.QuoteRequest{Nonce: newNonce(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.remote(t, nil).Quote(t.Context(), &pb.QuoteRequest{Nonce: []byte("short")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("short nonce: %v", err)
	}
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	for _, want := range []string{
		`bpfattest_loads_total{outcome="loaded",verdict="OK"} 1`,
		`bpfattest_journal_writable 1`,
		`bpfattest_tpm_quotes_total 1`,
		`bpfattest_log_records `,
		`bpfattest_extend_seconds_bucket{le="+Inf"}`,
		`bpfattest_pipeline_wait_seconds_count{work="load"} 1`,
		`bpfattest_pipeline_wait_seconds_bucket{work="quote",le="+Inf"}`,
		`bpfattest_observer_findings_total{kind="unmeasured"}`,
		`bpfattest_build_info{goversion="go`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Load",grpc_service="bpfattest.v1.LocalService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Quote",grpc_service="bpfattest.v1.AttestationService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="Quote",grpc_service="bpfattest.v1.AttestationService",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_count{grpc_method="Quote",grpc_service="bpfattest.v1.AttestationService",grpc_type="unary"} 2`,
		`bpfattest_tpm_commands_total{class="quote"} 1`,
		`bpfattest_tpm_busy_seconds_total{class="quote"} `,
		`bpfattest_quote_tpm_share 0.3`,
		`bpfattest_loads_in_flight 0`,
		// The budgets, as the flags set them (three given, the rest defaults).
		`bpfattest_budget_limit{resource="events_streams",scope="peer"} 4`,
		`bpfattest_budget_limit{resource="quote_calls",scope="peer"} 100`,
		`bpfattest_budget_limit{resource="quote_calls",scope="total"} 2048`,
		`bpfattest_rate_limit_per_second{limit="activate"} 2`,
		`bpfattest_budget_limit{resource="remote_calls",scope="total"} 512`,
		`bpfattest_budget_in_use{resource="load_bytes"} 0`,
		`bpfattest_budget_refused_total{resource="local_calls"} 0`,
		`bpfattest_rate_limit_per_second{limit="identity"} 7`,
		`bpfattest_rate_limit_per_second{limit="events_bytes_total"} 4.194304e+06`,
		`bpfattest_remote_conns_limit{scope="host"} 16`,
		`bpfattest_remote_conns_closed_total{reason="stalled"} 0`,
		`bpfattest_timeout_seconds{kind="stall"} 9`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Every agent metric the alert rules use is in the scrape (a renamed
	// metric would leave an alert that can never fire).
	rules, err := os.ReadFile("../../deploy/prometheus/bpfattest-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\b(bpfattest_[a-z_]+|grpc_server_[a-z_]+)`).FindAllString(string(rules), -1)
	n := 0
	for _, name := range used {
		if strings.HasPrefix(name, "bpfattest_fleet_") {
			continue // the fleet service's (fleet: TestAlertRulesNameRealMetrics)
		}
		n++
		if !bytes.Contains(body, []byte("\n"+name+"{")) && !bytes.Contains(body, []byte("\n"+name+" ")) {
			t.Errorf("the alert rules use %s, which the agent's scrape lacks", name)
		}
	}
	if n < 6 {
		t.Errorf("the alert rules use %d agent metrics: %v", n, used)
	}
	check := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + d.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
}

// TestMetricsTLS serves metrics over mutual TLS, as the Kubernetes
// DaemonSet does: a scraper with a client certificate from the CA gets
// them, one without is refused at the handshake, and the plain-HTTP health
// listener answers the probes but serves no metrics.
func TestMetricsTLS(t *testing.T) {
	ca := testutil.NewCert(t, "scrapers-ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	scraper := testutil.NewCert(t, "prometheus", ca, false)
	d := startDaemon(t, "--metrics", "127.0.0.1:0", "--metrics-tls-cert", server.CertFile, "--metrics-tls-key", server.KeyFile,
		"--metrics-client-ca", ca.CertFile, "--health", "127.0.0.1:0")
	get := func(client *testutil.Cert, url string) (*http.Response, error) {
		cfg := clientTLS(ca, client, tls.VersionTLS13)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		return c.Get(url)
	}
	resp, err := get(scraper, "https://"+d.metrics+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("bpfattest_journal_writable 1")) {
		t.Errorf("metrics over mTLS: %s\n%s", resp.Status, body)
	}
	if resp, err := get(nil, "https://"+d.metrics+"/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("a scraper without a client certificate got %s", resp.Status)
	}
	if resp, err := http.Get("http://" + d.metrics + "/metrics"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Error("plain HTTP served metrics on the TLS listener")
	}
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusOK, "/metrics": http.StatusNotFound} {
		resp, err := http.Get("http://" + d.health + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("health listener %s: %s, want %d", path, resp.Status, want)
		}
	}
}

// TestConfigRefusals proves configurations that would weaken the remote
// API are refused with exit code 2 before anything is opened.
func TestConfigRefusals(t *testing.T) {
	testutil.RequireRoot(t)
	ca := testutil.NewCert(t, "ca", nil, false)
	server := testutil.NewCert(t, "agent", ca, true)
	for name, args := range map[string][]string{
		"insecure on all addresses": {"--listen", "0.0.0.0:0", "--insecure-loopback"},
		"listen without tls":        {"--listen", "127.0.0.1:0"},
		"client ca without tls":     {"--listen", "127.0.0.1:0", "--insecure-loopback", "--client-ca", ca.CertFile},
		"tls and insecure":          {"--listen", "127.0.0.1:0", "--insecure-loopback", "--tls-cert", server.CertFile, "--tls-key", server.KeyFile},
		"pcr 23":                    {"--pcr", "23"},
		"bad fingerprint":           {"--listen", "127.0.0.1:0", "--tls-cert", server.CertFile, "--tls-key", server.KeyFile, "--client-allow", "zz"},
		"unknown flag":              {"--no-such-flag"},
		"metrics cert without key":  {"--metrics", "127.0.0.1:0", "--metrics-tls-cert", server.CertFile},
		"metrics ca without tls":    {"--metrics", "127.0.0.1:0", "--metrics-client-ca", ca.CertFile},
		"metrics tls without addr":  {"--metrics-tls-cert", server.CertFile, "--metrics-tls-key", server.KeyFile},
	} {
		t.Run(name, func(t *testing.T) {
			code, stderr := runDaemon(t, args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s", code, exitUsage, stderr)
			}
		})
	}
}
