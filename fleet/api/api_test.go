package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/api"
)

// TestRoles: listed fingerprints win; OUs count only for verified chains;
// no TLS is the loopback role.
func TestRoles(t *testing.T) {
	cert := func(ou string) *x509.Certificate {
		return &x509.Certificate{Raw: []byte("cert-" + ou), Subject: pkix.Name{OrganizationalUnit: []string{ou}}}
	}
	admin, reader, other := cert(api.DefaultAdminOU), cert(api.DefaultReaderOU), cert("sales")
	r := api.Roles{Loopback: api.RoleReader, Admins: []string{api.Fingerprint(other.Raw)}}
	verified := func(c *x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	for _, c := range []struct {
		name string
		cs   *tls.ConnectionState
		want api.Role
	}{
		{"admin OU", verified(admin), api.RoleAdmin},
		{"reader OU", verified(reader), api.RoleReader},
		{"admin OU, unverified chain", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{admin}}, api.RoleNone},
		{"listed fingerprint", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{other}}, api.RoleAdmin},
		{"no certificate", &tls.ConnectionState{}, api.RoleNone},
		{"no TLS", nil, api.RoleReader},
	} {
		if got := r.Of(c.cs); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := api.NormalizeFingerprint("sha256:" + strings.Repeat("AB:", 31) + "AB"); err != nil {
		t.Error(err)
	}
	if _, err := api.NormalizeFingerprint("abc"); err == nil {
		t.Error("short fingerprint accepted")
	}
}

// TestJSONAPI drives the JSON API as the loopback role: reads work,
// writes need admin; as admin, registrations are validated whole.
func TestJSONAPI(t *testing.T) {
	svc := newService(t, fleet.Config{})
	for _, c := range []struct {
		role        api.Role
		wantRead    int
		wantWrite   int
		wantInvalid int
	}{{api.RoleNone, 403, 403, 403}, {api.RoleReader, 200, 403, 403}, {api.RoleAdmin, 200, 200, 400}} {
		h := api.NewHandler(svc, api.Options{Roles: api.Roles{Loopback: c.role}})
		srv := httptest.NewServer(h)
		get := func(path string) int {
			rsp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			rsp.Body.Close()
			return rsp.StatusCode
		}
		post := func(body string) int {
			rsp, err := http.Post(srv.URL+"/api/v1/agents", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			rsp.Body.Close()
			return rsp.StatusCode
		}
		if got := get("/api/v1/summary"); got != c.wantRead {
			t.Errorf("%v: summary %d, want %d", c.role, got, c.wantRead)
		}
		if got := post(`{"agents":[{"name":"web1","address":"127.0.0.1:7433"}]}`); got != c.wantWrite {
			t.Errorf("%v: register %d, want %d", c.role, got, c.wantWrite)
		}
		if got := post(`{"agents":[{"name":"web2","address":"127.0.0.1:7434"},{"name":"bad name","address":"x"}]}`); got != c.wantInvalid {
			t.Errorf("%v: invalid register %d, want %d", c.role, got, c.wantInvalid)
		}
		srv.Close()
	}
	srv := httptest.NewServer(api.NewHandler(svc, api.Options{Roles: api.Roles{Loopback: api.RoleReader}}))
	defer srv.Close()
	var list struct {
		Agents []api.AgentView `json:"agents"`
	}
	rsp, err := http.Get(srv.URL + "/api/v1/agents")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(rsp.Body).Decode(&list)
	rsp.Body.Close()
	if len(list.Agents) != 1 || list.Agents[0].Name != "web1" || list.Agents[0].Status != "none" || list.Agents[0].Policy != "default" {
		t.Errorf("agents after one valid and one refused registration: %+v", list.Agents)
	}
	for path, want := range map[string]int{"/api/v1/agents/nosuch": 404, "/api/v1/agents/web1/history": 200, "/api/v1/policies/default": 200,
		"/api/v1/agents?limit=x": 400} {
		rsp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		rsp.Body.Close()
		if rsp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, rsp.StatusCode, want)
		}
	}
}

// FuzzDecodeRegister: a registration body never panics the decoder or
// the validation, and what passes is within the limits.
func FuzzDecodeRegister(f *testing.F) {
	for _, s := range []string{
		`{"agents":[{"name":"web1","address":"127.0.0.1:7433"}]}`,
		`{"agents":[{"name":"edge","mode":"push","cert_sha256":"` + strings.Repeat("ab", 32) + `","policy":"strict"}]}`,
		`{"agents":[{"name":"db","address":"[::1]:1","ak_public":"AAEC","state":"QlBGVg=="}]}`,
		`{"agents":[]}`, `{}`, `[]`, `{"agents":[{"name":"x"}]} trailing`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := api.DecodeRegister(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for i := range specs {
			if specs[i].Validate() != nil {
				continue
			}
			s := specs[i]
			if len(s.AKPublic) > 4096 || len(s.State) > fleet.MaxStateLen || (s.Mode != "pull" && s.Mode != "push") {
				t.Fatalf("validated spec out of bounds: %+v", s)
			}
		}
	})
}
