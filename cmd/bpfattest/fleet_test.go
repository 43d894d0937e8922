package main

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fleetsvc "github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/api"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
)

// fleetServer serves a fleet service's API without TLS on a loopback port,
// every client having role.
func fleetServer(t *testing.T, role api.Role) string {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := fleetsvc.New(fleetsvc.Config{Store: st, Interval: time.Hour})
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
	return ln.Addr().String()
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
