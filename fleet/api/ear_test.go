package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/ear"
	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/api"
	"github.com/bpfattest/bpfattest/fleet/pushclient"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/internal/testutil"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// testPolicy is newService's default policy; nosimPolicy refuses the
// simulator the test agents run on.
const (
	testPolicy  = "version: 1\nallow_simulator: true\nrequire_signed: true\n"
	nosimPolicy = "version: 1\nrequire_signed: true\n"
)

// serveAPI serves h without TLS on a loopback port (HTTP/1 and HTTP/2,
// so gRPC too) and returns its address.
func serveAPI(t *testing.T, h http.Handler) string {
	t.Helper()
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

func fleetClient(t *testing.T, addr string) pb.FleetServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewFleetServiceClient(conn)
}

// checkEAR verifies a token with the verifier's public key twice, with
// the ear package and with go-jose alone, and returns its claims; the
// token must be about host, signed with kid, name the policy it was judged
// by, and carry the host's recorded verdict sv: its status, the nonce its
// quote answers, its time.
func checkEAR(t *testing.T, what, tok string, key *ecdsa.PrivateKey, kid, host, policy string, sv *store.Verdict) *ear.Claims {
	t.Helper()
	var v verifier.Verdict
	if err := json.Unmarshal(sv.Verdict, &v); err != nil {
		t.Fatalf("%s: the recorded verdict: %v", what, err)
	}
	got, err := ear.Verify(tok, &key.PublicKey, ear.VerifyOptions{})
	if err != nil {
		t.Fatalf("%s: ear.Verify: %v", what, err)
	}
	obj, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("%s: go-jose: %v", what, err)
	}
	payload, err := obj.Verify(&key.PublicKey)
	if err != nil {
		t.Fatalf("%s: go-jose: %v", what, err)
	}
	var raw struct {
		Sub     string `json:"sub"`
		Submods map[string]struct {
			Status string `json:"ear_status"`
		} `json:"submods"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil || raw.Sub != host {
		t.Errorf("%s: payload sub %q, %v", what, raw.Sub, err)
	}
	c := got.Claims
	a := c.Submods[ear.SubmodLabel]
	if got.KeyID != kid || c.Subject != host || a == nil || a.Verdict == nil || raw.Submods[ear.SubmodLabel].Status != string(a.Status) {
		t.Fatalf("%s: kid %q subject %q submod %+v", what, got.KeyID, c.Subject, a)
	}
	if a.Verdict.Status != v.Status || v.Status != sv.Status || string(a.Nonce) != string(v.Nonce) || len(v.Nonce) == 0 ||
		c.IssuedAt != sv.At.Unix() {
		t.Errorf("%s: verdict %s nonce %x iat %d; the host's: %s nonce %x at %v", what, a.Verdict.Status, []byte(a.Nonce), c.IssuedAt,
			sv.Status, v.Nonce, sv.At)
	}
	if want := ear.PolicyID([]byte(policy)); len(a.PolicyIDs) != 1 || a.PolicyIDs[0] != want {
		t.Errorf("%s: policy ids %q, want %s", what, a.PolicyIDs, want)
	}
	return c
}

// TestEARServed: a service with an EAR key verifies a real agent by pull
// (web1) and takes its pushed evidence (edge1). The EAR of each host's
// latest verdict, served as JSON, as application/eat+jwt and over gRPC,
// verifies with the key's public key (ear.Verify, and go-jose alone), is
// about that host and carries its recorded verdict (status, the nonce the
// quote answers, the policy version's id); the webhook of a transition
// (web2, the same agent judged by a policy it fails) carries the
// transition's EAR, and later rounds sign a new EAR of their own without
// keeping it in the history.
func TestEARServed(t *testing.T) {
	ag, addr := startAgentAt(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef")
	var mu sync.Mutex
	var events []fleet.Webhook // guarded by mu
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := fleet.VerifyWebhook(secret, r.Header.Get(fleet.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
		}
		var ev fleet.Webhook
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook: %v", err)
		}
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	defer rx.Close()
	const interval = 2 * time.Second
	svc := newService(t, fleet.Config{Interval: interval, Poll: 50 * time.Millisecond, TOFU: true, PushGrace: time.Minute,
		Webhooks: []string{rx.URL}, WebhookSecret: secret, EARKey: key,
		Dial: func(a *store.Agent) (*grpc.ClientConn, error) {
			return grpc.NewClient("passthrough:///"+a.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}})
	kid := svc.EARKeyID()
	if kid == "" || svc.EARAlgorithm() != ear.ES256 {
		t.Fatalf("kid %q alg %q", kid, svc.EARAlgorithm())
	}
	ca := testutil.NewCert(t, "ca", nil, false)
	node := testutil.NewCert(t, "node", ca, false)
	push := pushEndpoint(t, svc, ca, testutil.NewCert(t, "fleet", ca, true))
	ctx := t.Context()
	if _, err := svc.PutPolicy(ctx, "nosim", []byte(nosimPolicy)); err != nil {
		t.Fatal(err)
	}
	// web2 is the same agent, judged by a policy it fails.
	if err := svc.Register(ctx, []fleet.AgentSpec{{Name: "web1", Address: addr}, {Name: "web2", Address: addr, Policy: "nosim"},
		{Name: "edge1", Mode: store.ModePush, CertSHA256: api.Fingerprint(node.Cert.Raw)}}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	pc := &pushclient.Client{Agent: ag, Verifier: push(node), Timeout: 30 * time.Second}
	if r, err := pc.Once(ctx); err != nil || r.Status != verifier.StatusCompliant {
		t.Fatalf("push: %+v, %v", r, err)
	}
	deadline := time.Now().Add(3 * interval)
	for {
		if _, err := svc.LatestEAR(ctx, "web1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web1 has no EAR after %v", 3*interval)
		}
		time.Sleep(50 * time.Millisecond)
	}

	srv := serveAPI(t, api.NewHandler(svc, api.Options{Roles: api.Roles{Loopback: api.RoleReader}}))
	grpcAPI := fleetClient(t, srv)
	first := map[string]string{}
	for _, host := range []string{"web1", "edge1"} {
		v, err := svc.LatestEAR(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		first[host] = v.EAR
		checkEAR(t, host+" (store)", v.EAR, key, kid, host, testPolicy, v)

		tok, sv := servedEAR(t, svc, host, func() string {
			rsp, err := http.Get("http://" + srv + "/api/v1/agents/" + host + "/ear")
			if err != nil {
				t.Fatal(err)
			}
			defer rsp.Body.Close()
			var view api.EARView
			if err := json.NewDecoder(rsp.Body).Decode(&view); err != nil || rsp.StatusCode != http.StatusOK || view.Agent != host ||
				view.Status != verifier.StatusCompliant || view.VerifiedAt.IsZero() {
				t.Fatalf("%s: JSON: %d %+v %v", host, rsp.StatusCode, view, err)
			}
			return view.EAR
		})
		checkEAR(t, host+" (JSON)", tok, key, kid, host, testPolicy, sv)

		tok, sv = servedEAR(t, svc, host, func() string {
			req, _ := http.NewRequest(http.MethodGet, "http://"+srv+"/api/v1/agents/"+host+"/ear", nil)
			req.Header.Set("Accept", "application/eat+jwt, application/json;q=0.5")
			rsp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer rsp.Body.Close()
			body, _ := io.ReadAll(rsp.Body)
			if rsp.StatusCode != http.StatusOK || rsp.Header.Get("Content-Type") != fleet.EARMediaType {
				t.Fatalf("%s: token: %d %q %s", host, rsp.StatusCode, rsp.Header.Get("Content-Type"), body)
			}
			return string(body)
		})
		checkEAR(t, host+" (application/eat+jwt)", tok, key, kid, host, testPolicy, sv)

		tok, sv = servedEAR(t, svc, host, func() string {
			r, err := grpcAPI.GetEAR(ctx, &pb.GetEARRequest{Name: host})
			if err != nil || r.GetName() != host || r.GetStatus() != verifier.StatusCompliant || r.GetVerifiedAt() == nil {
				t.Fatalf("%s: gRPC: %+v, %v", host, r, err)
			}
			return r.GetToken()
		})
		checkEAR(t, host+" (gRPC)", tok, key, kid, host, testPolicy, sv)

		// Asked for JSON, with the token refused (q=0): JSON.
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv+"/api/v1/agents/"+host+"/ear", nil)
		req.Header.Set("Accept", "application/eat+jwt;q=0, application/json")
		rsp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rsp.Body.Close()
		if ct := rsp.Header.Get("Content-Type"); rsp.StatusCode != http.StatusOK || ct != "application/json" {
			t.Errorf("%s: Accept with application/eat+jwt;q=0: %d %q, want JSON", host, rsp.StatusCode, ct)
		}
	}

	// The key set: what a receiver verifies every EAR of this node with.
	rsp, err := http.Get("http://" + srv + "/api/v1/ear/keys")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK || rsp.Header.Get("Content-Type") != ear.KeySetMediaType {
		t.Fatalf("GET /api/v1/ear/keys: %d %q %s", rsp.StatusCode, rsp.Header.Get("Content-Type"), body)
	}
	set, err := ear.ParseKeySet(body)
	if err != nil || set.Len() != 1 {
		t.Fatalf("served key set %s: %v", body, err)
	}
	if pk, ok := set.Key(kid); !ok || pk.Algorithm != ear.ES256 || !key.PublicKey.Equal(pk.Key) {
		t.Errorf("served key set %s: want the service's public key as %s, ES256", body, kid)
	}
	for host, tok := range first {
		if got, err := ear.VerifyWithKeySet(tok, set, ear.VerifyOptions{}); err != nil || got.Claims.Subject != host {
			t.Errorf("%s's EAR with the served key set: %v", host, err)
		}
	}
	if _, err := grpcAPI.GetEAR(ctx, &pb.GetEARRequest{Name: "nosuch"}); status.Code(err) != codes.NotFound {
		t.Errorf("gRPC, unknown agent: %v", err)
	}

	// No webhook of a first compliant verdict; web2's first verdict
	// (non-compliant) has one, which carries its EAR, the one the history
	// keeps for the transition.
	deadline = time.Now().Add(3 * interval)
	for {
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no webhook after %v", 3*interval)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	got := append([]fleet.Webhook(nil), events...)
	mu.Unlock()
	if len(got) != 1 || got[0].Agent != "web2" || got[0].To != verifier.StatusNonCompliant || got[0].EAR == "" {
		t.Fatalf("webhooks %+v, want one: web2 none → non-compliant with an EAR", got)
	}
	ev := got[0]
	hist, err := svc.Store().History(ctx, "web2", store.HistoryFilter{TransitionsOnly: true})
	if err != nil || len(hist) != 1 || ev.EAR != hist[0].EAR {
		t.Fatalf("web2's transitions %+v, %v; the webhook's EAR is not the transition's", hist, err)
	}
	c := checkEAR(t, "web2 (webhook)", ev.EAR, key, kid, "web2", nosimPolicy, &store.Verdict{Status: ev.To, Verdict: ev.Verdict, At: hist[0].At})
	a := c.Submods[ear.SubmodLabel]
	if a.Status != ear.TierContraindicated || a.Verdict.Host != "web2" || len(a.Verdict.Violations) == 0 || a.Verdict.Violations[0].Rule != "allow_simulator" {
		t.Errorf("web2's EAR: status %s, verdict of %s, violations %+v", a.Status, a.Verdict.Host, a.Verdict.Violations)
	}

	// A later pull round signs a new EAR; rounds that change nothing keep
	// none in the history.
	deadline = time.Now().Add(3 * interval)
	for {
		if v, _ := svc.LatestEAR(ctx, "web1"); v != nil && v.EAR != first["web1"] {
			checkEAR(t, "web1 (a later round)", v.EAR, key, kid, "web1", testPolicy, v)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web1's EAR unchanged after %v", 3*interval)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hist, err = svc.Store().History(ctx, "web1", store.HistoryFilter{})
	if err != nil || len(hist) < 2 {
		t.Fatalf("history %+v, %v", hist, err)
	}
	for _, h := range hist {
		if (h.EAR != "") != h.Transition {
			t.Errorf("history row %d (transition %v): EAR %q", h.ID, h.Transition, h.EAR)
		}
	}
}

// servedEAR reads a token with get and returns it with the recorded
// verdict it is the EAR of: the latest verdict just before or just after
// the read (a pull round may record a newer one in between, not two).
func servedEAR(t *testing.T, svc *fleet.Service, host string, get func() string) (string, *store.Verdict) {
	t.Helper()
	latest := func() *store.Verdict {
		v, err := svc.LatestEAR(t.Context(), host)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		return v
	}
	before := latest()
	tok := get()
	after := latest()
	for _, v := range []*store.Verdict{before, after} {
		if v.EAR == tok {
			return tok, v
		}
	}
	t.Fatalf("%s: the served EAR is neither the latest verdict's before nor after it was served", host)
	return "", nil
}

// TestEARWithoutKey: a service without an EAR key answers a request for
// an agent's EAR with not found (404, NOT_FOUND) and says why: it has no
// --ear-key; an unknown agent is not found as such.
func TestEARWithoutKey(t *testing.T) {
	svc := newService(t, fleet.Config{Interval: time.Hour})
	if svc.EARKeyID() != "" || svc.EARAlgorithm() != "" {
		t.Errorf("no key: kid %q alg %q", svc.EARKeyID(), svc.EARAlgorithm())
	}
	if err := svc.Register(t.Context(), []fleet.AgentSpec{{Name: "web1", Address: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	srv := serveAPI(t, api.NewHandler(svc, api.Options{Roles: api.Roles{Loopback: api.RoleReader}}))
	rsp, err := http.Get("http://" + srv + "/api/v1/ear/keys")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "--ear-key") {
		t.Errorf("key set without a key: %d %s, want 404 naming --ear-key", rsp.StatusCode, b)
	}
	for host, want := range map[string]string{"web1": "--ear-key", "nosuch": "not found"} {
		rsp, err := http.Get("http://" + srv + "/api/v1/agents/" + host + "/ear")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(rsp.Body).Decode(&body)
		rsp.Body.Close()
		if err != nil || rsp.StatusCode != http.StatusNotFound || !strings.Contains(body.Error, want) {
			t.Errorf("%s: %d %q, %v; want 404 saying %q", host, rsp.StatusCode, body.Error, err, want)
		}
		_, err = fleetClient(t, srv).GetEAR(t.Context(), &pb.GetEARRequest{Name: host})
		if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("%s: gRPC %v; want NOT_FOUND saying %q", host, err, want)
		}
	}
}
