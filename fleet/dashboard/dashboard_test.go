package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/dashboard"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
)

// TestPages renders the pages: the filter refuses unknown statuses, an
// unknown host is 404, and what agents say is escaped.
func TestPages(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := fleet.New(fleet.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := st.Register(ctx, store.Registration{Name: "web1", Mode: store.ModePull, Address: "127.0.0.1:1", NextDue: now, Now: now}); err != nil {
		t.Fatal(err)
	}
	as, _ := st.Claim(ctx, store.ClaimRequest{Owner: "r", Now: now, Lease: time.Minute, Limit: 1})
	if err := st.Complete(ctx, &store.Outcome{Agent: "web1", Owner: "r", FromVersion: as[0].StateVersion, Status: "could-not-verify",
		Reason: `<script>alert(1)</script>`, At: now, NextDue: now}); err != nil {
		t.Fatal(err)
	}
	h, err := dashboard.New(svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string) (int, string) {
		rsp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		b, _ := io.ReadAll(rsp.Body)
		return rsp.StatusCode, string(b)
	}
	for path, want := range map[string]int{"/": 200, "/?status=could-not-verify": 200, "/?status=bogus": 400, "/hosts/web1": 200, "/hosts/nosuch": 404} {
		if code, _ := get(path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	for _, path := range []string{"/", "/hosts/web1"} {
		_, body := get(path)
		if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("%s: the reason is not escaped", path)
		}
	}
	if _, body := get("/?status=compliant"); strings.Contains(body, `data-host="web1"`) {
		t.Error("filter on compliant lists web1")
	}
}
