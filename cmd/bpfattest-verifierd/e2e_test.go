package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/verifier"
)

// e2eAgents is the acceptance fleet's size.
const e2eAgents = 20

// e2eInterval is the verification interval of the end-to-end tests:
// short, so that a test takes seconds.
const e2eInterval = 2 * time.Second

// hookReceiver is a webhook endpoint that checks every signature and
// keeps the events.
type hookReceiver struct {
	*httptest.Server
	secret []byte
	mu     sync.Mutex
	events []fleet.Webhook // guarded by mu
	bad    []string        // guarded by mu
}

func newHookReceiver(tb testing.TB, secret []byte) *hookReceiver {
	h := &hookReceiver{secret: secret}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := fleet.VerifyWebhook(secret, r.Header.Get(fleet.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			h.bad = append(h.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev fleet.Webhook
		if err := json.Unmarshal(body, &ev); err != nil || r.Header.Get(fleet.EventIDHeader) != ev.ID {
			h.bad = append(h.bad, fmt.Sprintf("body %s: %v", body, err))
		}
		h.events = append(h.events, ev)
	}))
	tb.Cleanup(h.Close)
	return h
}

// of returns the events about agent whose new status is to ("" any).
func (h *hookReceiver) of(agent, to string) []fleet.Webhook {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []fleet.Webhook
	for _, e := range h.events {
		if e.Agent == agent && (to == "" || e.To == to) {
			out = append(out, e)
		}
	}
	return out
}

func (h *hookReceiver) all() []fleet.Webhook {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]fleet.Webhook(nil), h.events...)
}

// watchPolicy allows every program type but XDP: the hosts run under the
// kernel that every other process of the machine shares, so the program
// loaded behind an agent's back is of a type nothing else here loads.
func watchPolicy() string {
	var b strings.Builder
	b.WriteString("version: 1\nallow_simulator: true\nrequire_signed: true\nallowed_program_types: [")
	for t := 0; t <= 40; t++ {
		if t == int(ebpf.XDP) {
			continue
		}
		if t > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, t)
	}
	b.WriteString("]\n")
	return b.String()
}

func writeFile(tb testing.TB, name, body string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// dumpDOM loads url in headless Chromium and returns the DOM it built.
func dumpDOM(tb testing.TB, url string) string {
	tb.Helper()
	bin := testutil.RequireTool(tb, "chromium")
	cmd := exec.CommandContext(tb.Context(), bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+tb.TempDir(), "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+tb.TempDir())
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("chromium %s: %v", url, err)
	}
	return string(out)
}

// TestFleetEndToEnd is the acceptance run: 20 real agents registered
// from an inventory are kept verified; a program loaded behind one
// agent's back turns that host non-compliant within one interval, fires
// one webhook, shows on the dashboard (in headless Chromium) and in its
// history, and the host recovers when the program is gone.
func TestFleetEndToEnd(t *testing.T) {
	agents := spawnAgents(t, e2eAgents, "--trust", testutil.LskelFile(t, "keys/TEST_ONLY_signing_cert.pem"))
	for _, a := range agents {
		a.load(t, "headers/counter.signed.lskel.h")
	}
	var inv strings.Builder
	for i, a := range agents {
		fmt.Fprintf(&inv, "host%02d %s\n", i, a.listen)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	hooks := newHookReceiver(t, secret)
	p := newPKI(t)
	svc, err := start(serviceBin, "--state-dir", t.TempDir(), "--inventory", writeFile(t, "hosts.txt", inv.String()),
		"--policy", writeFile(t, "default.yaml", "version: 1\nallow_simulator: true\nrequire_signed: true\n"), "--tofu", "--agent-insecure-loopback",
		"--listen", "127.0.0.1:0", "--tls-cert", p.server.CertFile, "--tls-key", p.server.KeyFile, "--client-ca", p.ca.CertFile,
		"--dashboard-listen", "127.0.0.1:0", "--interval", e2eInterval.String(), "--timeout", "1s",
		"--webhook", hooks.URL, "--webhook-secret-file", writeFile(t, "secret", string(secret)), "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.stop(t)
	api := "https://" + svc.ready["listen"].(string)
	dash := "http://" + svc.ready["dashboard"].(string)
	admin, reader, stranger := p.tlsClient(p.admin), p.tlsClient(p.reader), p.tlsClient(p.stranger)

	// Roles: a stranger's certificate reads nothing; a reader cannot
	// write; the admin stores the watch policy and moves host00 to it.
	if code := getJSON(t, stranger, api+"/api/v1/summary", nil); code != http.StatusForbidden {
		t.Errorf("stranger: summary status %d, want 403", code)
	}
	if rsp, err := reader.Post(api+"/api/v1/agents", "application/json", strings.NewReader(`{"agents":[]}`)); err != nil || rsp.StatusCode != http.StatusForbidden {
		t.Errorf("reader registering: %v %v, want 403", rsp.StatusCode, err)
	}
	req, _ := http.NewRequest(http.MethodPut, api+"/api/v1/policies/watch", strings.NewReader(watchPolicy()))
	if rsp, err := admin.Do(req); err != nil || rsp.StatusCode != http.StatusOK {
		t.Fatalf("admin storing a policy: %v %v", rsp.StatusCode, err)
	}
	body := fmt.Sprintf(`{"agents":[{"name":"host00","address":%q,"policy":"watch"}]}`, agents[0].listen)
	if rsp, err := admin.Post(api+"/api/v1/agents", "application/json", strings.NewReader(body)); err != nil || rsp.StatusCode != http.StatusOK {
		t.Fatalf("admin re-registering host00: %v %v", rsp.StatusCode, err)
	}

	var sum struct {
		Agents   int            `json:"agents"`
		ByStatus map[string]int `json:"by_status"`
	}
	took := waitFor(t, 30*time.Second, "all 20 hosts compliant", func() bool {
		getJSON(t, reader, api+"/api/v1/summary", &sum)
		return sum.ByStatus[verifier.StatusCompliant] == e2eAgents
	})
	t.Logf("20 hosts compliant %v after start", took.Round(time.Millisecond))
	time.Sleep(e2eInterval) // host00 verified under its new policy
	if n := len(hooks.all()); n != 0 {
		t.Fatalf("%d webhooks before anything happened: %+v", n, hooks.all())
	}

	// Behind host00's back (and every other agent's: the kernel is
	// shared, but only host00's policy forbids XDP).
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "behind_back", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatalf("load XDP program: %v", err)
	}
	loaded := time.Now()
	defer prog.Close()
	var detail struct {
		Status  string            `json:"status"`
		Verdict *verifier.Verdict `json:"verdict"`
	}
	oneInterval := time.Duration(float64(e2eInterval)*1.1) + time.Second // interval + jitter + one verification
	took = waitFor(t, 3*oneInterval, "host00 non-compliant", func() bool {
		getJSON(t, reader, api+"/api/v1/agents/host00", &detail)
		return detail.Status == verifier.StatusNonCompliant
	})
	t.Logf("host00 non-compliant %v after the program was loaded (interval %v)", took.Round(time.Millisecond), e2eInterval)
	if took > oneInterval {
		t.Errorf("host00 non-compliant after %v, more than one interval (%v)", took, oneInterval)
	}
	found := false
	for _, v := range detail.Verdict.Violations {
		found = found || (v.Rule == "allowed_program_types" && strings.Contains(v.Reason, "xdp"))
	}
	if !found {
		t.Errorf("host00's violations %+v lack the XDP program", detail.Verdict.Violations)
	}
	waitFor(t, 10*time.Second, "the webhook", func() bool { return len(hooks.of("host00", verifier.StatusNonCompliant)) > 0 })
	time.Sleep(2 * e2eInterval) // time for duplicates or other hosts' events to show
	if got := hooks.all(); len(got) != 1 || got[0].Agent != "host00" || got[0].From != verifier.StatusCompliant || got[0].To != verifier.StatusNonCompliant {
		t.Errorf("webhooks %+v, want exactly one: host00 compliant → non-compliant", got)
	}
	getJSON(t, reader, api+"/api/v1/summary", &sum)
	if sum.ByStatus[verifier.StatusCompliant] != e2eAgents-1 || sum.ByStatus[verifier.StatusNonCompliant] != 1 {
		t.Errorf("summary %v, want 19 compliant and 1 non-compliant", sum.ByStatus)
	}

	// The dashboard, in a real browser.
	dom := dumpDOM(t, dash+"/?status=non-compliant")
	if !strings.Contains(dom, `data-host="host00"`) || strings.Contains(dom, `data-host="host01"`) ||
		!strings.Contains(dom, `data-status="non-compliant">1<`) || !strings.Contains(dom, `data-status="compliant">19<`) {
		t.Errorf("dashboard filtered on non-compliant:\n%s", dom)
	}
	dom = dumpDOM(t, dash+"/hosts/host00")
	for _, want := range []string{`data-rule="allowed_program_types"`, "behind_back", `class="transition" data-status="non-compliant"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("host page lacks %s:\n%s", want, dom)
		}
	}

	// The history: none → compliant → non-compliant, every transition
	// with its verdict.
	var hist struct {
		History []struct {
			Status     string          `json:"status"`
			PrevStatus string          `json:"prev_status"`
			Verdict    json.RawMessage `json:"verdict"`
		} `json:"history"`
	}
	getJSON(t, reader, api+"/api/v1/agents/host00/history?transitions=1", &hist)
	if len(hist.History) != 2 || hist.History[0].PrevStatus != verifier.StatusCompliant || hist.History[0].Status != verifier.StatusNonCompliant ||
		hist.History[1].PrevStatus != "none" || len(hist.History[0].Verdict) == 0 {
		t.Errorf("history %+v", hist.History)
	}

	// Removed: host00 recovers, and webhooks say so once.
	prog.Close()
	removed := time.Now()
	took = waitFor(t, 3*oneInterval, "host00 compliant again", func() bool {
		getJSON(t, reader, api+"/api/v1/agents/host00", &detail)
		return detail.Status == verifier.StatusCompliant
	})
	t.Logf("host00 compliant %v after the program was removed; %v non-compliant in all", took.Round(time.Millisecond), removed.Sub(loaded).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "the recovery webhook", func() bool { return len(hooks.of("host00", verifier.StatusCompliant)) > 0 })
	time.Sleep(e2eInterval)
	if got := hooks.all(); len(got) != 2 || got[1].From != verifier.StatusNonCompliant || got[1].To != verifier.StatusCompliant {
		t.Errorf("webhooks %+v, want the second: host00 non-compliant → compliant", got)
	}
	if len(hooks.bad) > 0 {
		t.Errorf("badly signed or formed webhooks: %q", hooks.bad)
	}
}
