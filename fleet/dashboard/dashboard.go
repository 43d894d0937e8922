// Package dashboard serves the fleet service's web page: the fleet
// summary, the hosts filterable by verdict status, and one host's
// violations with their reasons and its verdict history. Pages are
// rendered on the server with html/template (contextual escaping of
// everything agents or operators wrote) and need no script and no build
// step.
package dashboard

import (
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/bpfattest/bpfattest/ear"
	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/verifier"
)

//go:embed templates/*.html
var files embed.FS

// pageSize is how many hosts one page lists.
const pageSize = 500

// historyRows is how many history rows the host page shows.
const historyRows = 50

// Handler serves the dashboard.
type Handler struct {
	svc  *fleet.Service
	tmpl *template.Template
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns the dashboard of svc.
func New(svc *fleet.Service, log *slog.Logger) (*Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t, err := template.New("").Funcs(template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"statusClass": func(s string) string {
			switch s {
			case verifier.StatusCompliant:
				return "ok"
			case verifier.StatusNonCompliant:
				return "bad"
			case verifier.StatusUnreachable, verifier.StatusUnverified:
				return "warn"
			}
			return "none"
		},
		"tierClass": func(t ear.Tier) string {
			switch t {
			case ear.TierAffirming:
				return "ok"
			case ear.TierContraindicated:
				return "bad"
			case ear.TierWarning:
				return "warn"
			}
			return "none"
		},
		"orNone": func(s string) string {
			if s == "" {
				return "none"
			}
			return s
		},
		"hostURL": func(name string) string { return "/hosts/" + url.PathEscape(name) },
	}).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	h := &Handler{svc: svc, tmpl: t, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.fleet)
	h.mux.HandleFunc("GET /hosts/{name}", h.host)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// statuses are the filter tabs, in order.
var statuses = []string{verifier.StatusCompliant, verifier.StatusNonCompliant, verifier.StatusUnreachable, verifier.StatusUnverified, "none"}

type fleetPage struct {
	Summary  *store.Summary
	Counts   []statusCount
	Filter   string
	Hosts    []store.AgentView
	More     string
	Interval time.Duration
	Lag      time.Duration
	Now      time.Time
}

type statusCount struct {
	Status string
	N      int
}

func (h *Handler) fleet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	filter := r.URL.Query().Get("status")
	if filter != "" && !slices.Contains(statuses, filter) {
		http.Error(w, "unknown status", http.StatusBadRequest)
		return
	}
	now := time.Now()
	sum, err := h.svc.Store().Summary(ctx, now)
	if err != nil {
		h.fail(w, err)
		return
	}
	hosts, err := h.svc.Store().Agents(ctx, store.AgentFilter{Status: filter, After: r.URL.Query().Get("after"), Limit: pageSize})
	if err != nil {
		h.fail(w, err)
		return
	}
	p := fleetPage{Summary: sum, Filter: filter, Hosts: hosts, Interval: h.svc.Interval(), Now: now}
	for _, s := range statuses {
		p.Counts = append(p.Counts, statusCount{s, sum.ByStatus[s]})
	}
	if !sum.OldestDue.IsZero() && sum.OldestDue.Before(now) {
		p.Lag = now.Sub(sum.OldestDue).Round(time.Millisecond)
	}
	if len(hosts) == pageSize {
		q := url.Values{"after": {hosts[len(hosts)-1].Name}}
		if filter != "" {
			q.Set("status", filter)
		}
		p.More = "/?" + q.Encode()
	}
	h.render(w, "fleet.html", p)
}

type hostPage struct {
	Agent   *store.Agent
	Verdict *store.Verdict
	Detail  *verifier.Verdict
	// EAR is the appraisal of the latest verdict (ear.Appraise, what the
	// verdict's EAR says); Signed whether the verdict was recorded with a
	// signed EAR.
	EAR     *earView
	Signed  bool
	History []store.HistoryRow
}

// earView is an appraisal as the page shows it: the status and each claim
// of the trustworthiness vector with its tier and reason.
type earView struct {
	Status ear.Tier
	Claims []earClaim
}

type earClaim struct {
	Name   string
	Value  ear.Claim
	Tier   ear.Tier
	Reason string
}

// viewEAR is the appraisal of v.
func viewEAR(v *verifier.Verdict) *earView {
	a := ear.Appraise(v)
	out := &earView{Status: a.Status}
	for _, c := range a.Vector.Claims() {
		if c.Value == ear.NoClaim && a.Reasons[c.Name] == "" {
			continue
		}
		out.Claims = append(out.Claims, earClaim{Name: c.Name, Value: c.Value, Tier: c.Value.Tier(), Reason: a.Reasons[c.Name]})
	}
	return out
}

func (h *Handler) host(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	a, err := h.svc.Store().Agent(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no such host", http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	p := hostPage{Agent: a}
	v, err := h.svc.Store().Verdict(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		h.fail(w, err)
		return
	default:
		p.Verdict, p.Signed = v, v.EAR != ""
		// What the kernel holds is known only from verified evidence.
		var d verifier.Verdict
		verified := v.Status == verifier.StatusCompliant || v.Status == verifier.StatusNonCompliant
		if json.Unmarshal(v.Verdict, &d) == nil {
			p.EAR = viewEAR(&d)
			if verified {
				p.Detail = &d
			}
		}
	}
	if p.History, err = h.svc.Store().History(ctx, name, store.HistoryFilter{Limit: historyRows}); err != nil {
		h.fail(w, err)
		return
	}
	h.render(w, "host.html", p)
}

func (h *Handler) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := h.tmpl.ExecuteTemplate(w, name, data); err != nil {
		h.log.Warn("dashboard", "page", name, "err", err)
	}
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	h.log.Warn("dashboard", "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
