package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/ear"
	fleetsvc "github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/api"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
)

// fleetServer serves a fleet service's API without TLS on a loopback port,
// every client having role.
func fleetServer(t *testing.T, role api.Role) string {
	t.Helper()
	_, addr := fleetServerWith(t, role, fleetsvc.Config{Interval: time.Hour})
	return addr
}

// fleetServerWith is fleetServer of a service configured by cfg.
func fleetServerWith(t *testing.T, role api.Role, cfg fleetsvc.Config) (*fleetsvc.Service, string) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	svc, err := fleetsvc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PutPolicy(t.Context(), fleetsvc.DefaultPolicyName, []byte("version: 1\n")); err != nil {
		t.Fatal(err)
	}
	h := api.NewHandler(svc, api.Options{Roles: api.Roles{Loopback: role}})
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return svc, ln.Addr().String()
}

// TestFleetCLI drives the fleet service's API with bpfattest fleet.
func TestFleetCLI(t *testing.T) {
	addr := fleetServer(t, api.RoleAdmin)
	conn := []string{"--server", addr, "--insecure-loopback"}
	fleet := func(want int, args ...string) string {
		t.Helper()
		code, out, errs := run(t, append(append([]string{"fleet"}, args[:1]...), append(conn, args[1:]...)...)...)
		if code != want {
			t.Fatalf("fleet %q: exit %d, want %d\n%s%s", args, code, want, out, errs)
		}
		return out + errs
	}
	inv := writeTemp(t, "hosts.txt", "web1 127.0.0.1:7001\nweb2 127.0.0.1:7002\n")
	if out := fleet(exitOK, "register", "--inventory", inv); !strings.Contains(out, "registered 2 agents") {
		t.Errorf("register: %s", out)
	}
	if out := fleet(exitOK, "agents"); !strings.Contains(out, "web1") || !strings.Contains(out, "127.0.0.1:7002") || !strings.Contains(out, "none") {
		t.Errorf("agents: %s", out)
	}
	var sum struct {
		Agents int `json:"agents"`
	}
	if out := fleet(exitOK, "summary", "--json"); json.Unmarshal([]byte(out), &sum) != nil || sum.Agents != 2 {
		t.Errorf("summary --json: %s", out)
	}
	pol := writeTemp(t, "strict.yaml", "version: 1\nforbid_unmeasured: true\n")
	if out := fleet(exitOK, "policy", "put", "strict", pol); !strings.Contains(out, "strict version 1") {
		t.Errorf("policy put: %s", out)
	}
	if out := fleet(exitOK, "policy", "get", "strict"); !strings.Contains(out, "forbid_unmeasured: true") {
		t.Errorf("policy get: %s", out)
	}
	if out := fleet(exitOK, "policy", "list"); !strings.Contains(out, "default") || !strings.Contains(out, "strict") {
		t.Errorf("policy list: %s", out)
	}
	if out := fleet(exitOK, "agent", "web1"); !strings.Contains(out, "web1 (pull 127.0.0.1:7001): none") {
		t.Errorf("agent: %s", out)
	}
	fleet(exitOK, "history", "web1")
	fleet(exitOK, "delete", "web2")
	if out := fleet(exitOK, "agents"); strings.Contains(out, "web2") {
		t.Errorf("agents after delete: %s", out)
	}
	if out := fleet(exitFailed, "register", "--name", "edge", "--mode", "push"); !strings.Contains(out, "InvalidArgument") {
		t.Errorf("push agent without a certificate: %s", out)
	}
	fleet(exitFailed, "agent", "nosuch")
	fleet(exitUsage, "agent")
	if code, _, _ := run(t, "fleet", "bogus"); code != exitUsage {
		t.Errorf("unknown subcommand: exit %d", code)
	}
	// A reader may look, not register.
	conn = []string{"--server", fleetServer(t, api.RoleReader), "--insecure-loopback"}
	fleet(exitOK, "summary")
	if out := fleet(exitFailed, "register", "--inventory", inv); !strings.Contains(out, "PermissionDenied") {
		t.Errorf("reader registering: %s", out)
	}
}

// TestFleetEARCLI: bpfattest fleet ear prints the token of a real
// agent's latest EAR, which verifies with the service's public key; with
// --verify-key it prints the verified claims, and refuses (exit 1) a key that
// did not sign it; a service without an EAR key says so.
func TestFleetEARCLI(t *testing.T) {
	a := spawnAgent(t)
	key := newEARKey(t, false)
	other := newEARKey(t, false)
	svc, addr := fleetServerWith(t, api.RoleReader, fleetsvc.Config{Interval: 2 * time.Second, TOFU: true, EARKey: key.signer,
		Dial: func(*store.Agent) (*grpc.ClientConn, error) {
			return grpc.NewClient("passthrough:///"+a.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}})
	if err := svc.Register(t.Context(), []fleetsvc.AgentSpec{{Name: "web1", Address: a.listen}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(10 * time.Second)
	var status string // of web1's verdict (the default policy refuses the simulator)
	for {
		if v, err := svc.LatestEAR(t.Context(), "web1"); err == nil {
			status = v.Status
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("web1 has no EAR after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn := []string{"--server", addr, "--insecure-loopback"}
	fleetEAR := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, append(append([]string{"fleet", "ear"}, conn...), args...)...)
	}
	code, out, errs := fleetEAR("web1")
	tok, err := ear.Verify(strings.TrimSpace(out), key.signer.Public(), ear.VerifyOptions{})
	if code != exitOK || err != nil || tok.Claims.Subject != "web1" {
		t.Fatalf("fleet ear web1: exit %d, %v\n%s%s", code, err, out, errs)
	}
	if code, out, errs := fleetEAR("web1", "--verify-key", key.public); code != exitOK || !strings.Contains(out, "subject:    web1") ||
		!strings.Contains(out, "verdict:    "+status+",") || !strings.Contains(out, "policy:     ni:///sha-256;") {
		t.Errorf("fleet ear --verify-key: exit %d\n%s%s", code, out, errs)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if code, out, errs := fleetEAR("web1", "--verify-key", key.public, "--json"); code != exitOK || json.Unmarshal([]byte(out), &claims) != nil || claims.Sub != "web1" {
		t.Errorf("fleet ear --verify-key --json: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := fleetEAR("web1", "--verify-key", other.public); code != exitFailed || !strings.Contains(errs, "INVALID") {
		t.Errorf("fleet ear with another key: exit %d\n%s%s", code, out, errs)
	}
	// The service's published key set verifies it too.
	rsp, err := http.Get("http://" + addr + "/api/v1/ear/keys")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if code, out, errs := fleetEAR("web1", "--verify-key", writeTemp(t, "keys.json", string(set))); rsp.StatusCode != http.StatusOK || code != exitOK ||
		!strings.Contains(out, "subject:    web1") {
		t.Errorf("fleet ear --verify-key with the served key set (%d %s): exit %d\n%s%s", rsp.StatusCode, set, code, out, errs)
	}
	if code, _, errs := fleetEAR("nosuch"); code != exitFailed || !strings.Contains(errs, "NotFound") {
		t.Errorf("fleet ear nosuch: exit %d %s", code, errs)
	}
	if code, _, _ := fleetEAR(); code != exitUsage {
		t.Errorf("fleet ear without a name: exit %d", code)
	}
	// A service without a key.
	noKey := fleetServer(t, api.RoleAdmin)
	conn = []string{"--server", noKey, "--insecure-loopback"}
	if code, _, errs := run(t, "fleet", "register", "--server", noKey, "--insecure-loopback", "--name", "web1", "--address", a.listen); code != exitOK {
		t.Fatalf("register: %s", errs)
	}
	if code, _, errs := fleetEAR("web1"); code != exitFailed || !strings.Contains(errs, "NotFound") || !strings.Contains(errs, "--ear-key") {
		t.Errorf("fleet ear on a service without a key: exit %d %s", code, errs)
	}
}
