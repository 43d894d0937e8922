package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/bpfattest/bpfattest/ear"
	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/store"
)

// MaxBodySize bounds a JSON request body (an inventory of states is the
// largest); MaxMessageSize bounds a gRPC message the same way.
const (
	MaxBodySize    = 64 << 20
	MaxMessageSize = MaxBodySize
)

// Options configure the API handler.
type Options struct {
	Roles Roles
	// Dashboard, when set, is served at / for readers.
	Dashboard http.Handler
	Logger    *slog.Logger
}

// Handler serves the gRPC FleetService (HTTP/2 requests with a gRPC
// content type), the JSON API under /api/v1/ and the dashboard.
type Handler struct {
	svc  *fleet.Service
	opts Options
	grpc *grpc.Server
	mux  *http.ServeMux
}

// NewHandler returns the API handler for svc.
func NewHandler(svc *fleet.Service, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{svc: svc, opts: opts, mux: http.NewServeMux()}
	h.grpc = grpc.NewServer(grpc.UnaryInterceptor(h.opts.Roles.authorize), grpc.MaxRecvMsgSize(MaxMessageSize))
	registerFleet(h.grpc, svc)
	reader, admin := h.role(RoleReader), h.role(RoleAdmin)
	h.mux.Handle("GET /api/v1/summary", reader(h.getSummary))
	h.mux.Handle("GET /api/v1/agents", reader(h.getAgents))
	h.mux.Handle("GET /api/v1/agents/{name}", reader(h.getAgent))
	h.mux.Handle("GET /api/v1/agents/{name}/history", reader(h.getHistory))
	h.mux.Handle("GET /api/v1/agents/{name}/ear", reader(h.getEAR))
	h.mux.Handle("GET /api/v1/ear/keys", reader(h.getEARKeys))
	h.mux.Handle("POST /api/v1/agents", admin(h.postAgents))
	h.mux.Handle("DELETE /api/v1/agents/{name}", admin(h.deleteAgent))
	h.mux.Handle("GET /api/v1/policies", reader(h.getPolicies))
	h.mux.Handle("GET /api/v1/policies/{name}", reader(h.getPolicy))
	h.mux.Handle("PUT /api/v1/policies/{name}", admin(h.putPolicy))
	if opts.Dashboard != nil {
		h.mux.Handle("GET /", reader(opts.Dashboard.ServeHTTP))
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		h.grpc.ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// Stop stops the gRPC server's handlers.
func (h *Handler) Stop() { h.grpc.Stop() }

// role wraps a handler with the role check.
func (h *Handler) role(need Role) func(http.HandlerFunc) http.Handler {
	return func(fn http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if got := h.opts.Roles.Of(r.TLS); got < need {
				writeError(w, http.StatusForbidden, fmt.Errorf("this needs the %s role, the client has %s", need, got))
				return
			}
			w.Header().Set("X-Content-Type-Options", "nosniff")
			fn(w, r)
		})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, err error) {
	b, _ := json.Marshal(map[string]string{"error": err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// fail maps an error to its HTTP status.
func fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, fleet.ErrInvalid):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, fleet.ErrNoEAR):
		writeError(w, http.StatusNotFound, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

func queryInt(r *http.Request, key string) (int, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s=%q", fleet.ErrInvalid, key, s)
	}
	return n, nil
}

func (h *Handler) getSummary(w http.ResponseWriter, r *http.Request) {
	s, err := summary(r.Context(), h.svc)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *Handler) getAgents(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		fail(w, err)
		return
	}
	q := r.URL.Query()
	as, err := listAgents(r.Context(), h.svc, q.Get("status"), q.Get("after"), limit)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": as})
}

func (h *Handler) getAgent(w http.ResponseWriter, r *http.Request) {
	d, err := agentDetail(r.Context(), h.svc, r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (h *Handler) getHistory(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		fail(w, err)
		return
	}
	tr := r.URL.Query().Get("transitions")
	hs, err := history(r.Context(), h.svc, r.PathValue("name"), tr == "1" || tr == "true", limit)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"history": hs})
}

// EARView is the JSON answer of GET /api/v1/agents/NAME/ear.
type EARView struct {
	Agent      string    `json:"agent"`
	Status     string    `json:"status"`
	VerifiedAt time.Time `json:"verified_at"`
	// EAR is the token (a JWT, docs/ear.md).
	EAR string `json:"ear"`
}

// getEAR answers the agent's latest EAR: the token itself, of media type
// fleet.EARMediaType, to a client that accepts application/eat+jwt, JSON
// (EARView) to any other.
func (h *Handler) getEAR(w http.ResponseWriter, r *http.Request) {
	v, err := h.svc.LatestEAR(r.Context(), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	if acceptsEAR(r.Header.Values("Accept")) {
		w.Header().Set("Content-Type", fleet.EARMediaType)
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, v.EAR)
		return
	}
	writeJSON(w, http.StatusOK, EARView{Agent: v.Agent, Status: v.Status, VerifiedAt: v.At.UTC(), EAR: v.EAR})
}

// getEARKeys answers the JWK Set of the key this node signs EARs with
// (media type application/jwk-set+json), what a receiver of its EARs
// verifies them with; NOT_FOUND when the node signs none.
func (h *Handler) getEARKeys(w http.ResponseWriter, r *http.Request) {
	b, err := h.svc.EARKeySet()
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", ear.KeySetMediaType)
	w.Write(b)
}

// acceptsEAR reports whether an Accept header names application/eat+jwt
// (with any parameters) with a quality above 0 (RFC 9110 §12.5.1: q=0
// means "not acceptable").
func acceptsEAR(accept []string) bool {
	for _, a := range accept {
		for _, m := range strings.Split(a, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(m))
			if err != nil || mt != "application/eat+jwt" {
				continue
			}
			if q, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(q, 64); err != nil || v <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// RegisterBody is the JSON body of POST /api/v1/agents.
type RegisterBody struct {
	Agents []fleet.AgentSpec `json:"agents"`
}

// DecodeRegister reads a registration body: one JSON object, at most
// MaxBodySize bytes, no unknown fields; the specs are validated by
// fleet.Service.Register.
func DecodeRegister(r io.Reader) ([]fleet.AgentSpec, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: body: %v", fleet.ErrInvalid, err)
	}
	if len(b) > MaxBodySize {
		return nil, fmt.Errorf("%w: body larger than %d bytes", fleet.ErrInvalid, MaxBodySize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var body RegisterBody
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("%w: body: %v", fleet.ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: body: trailing data", fleet.ErrInvalid)
	}
	if len(body.Agents) == 0 {
		return nil, fmt.Errorf("%w: no agents", fleet.ErrInvalid)
	}
	return body.Agents, nil
}

func (h *Handler) postAgents(w http.ResponseWriter, r *http.Request) {
	specs, err := DecodeRegister(r.Body)
	if err == nil {
		err = h.svc.Register(r.Context(), specs)
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"registered": len(specs)})
}

func (h *Handler) deleteAgent(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.Delete(r.Context(), r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) getPolicies(w http.ResponseWriter, r *http.Request) {
	ps, err := h.svc.Store().Policies(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	out := make([]PolicyView, 0, len(ps))
	for i := range ps {
		out = append(out, policyView(&ps[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

func (h *Handler) getPolicy(w http.ResponseWriter, r *http.Request) {
	v, err := queryInt(r, "version")
	if err != nil {
		fail(w, err)
		return
	}
	p, err := h.svc.Store().Policy(r.Context(), r.PathValue("name"), v)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, policyView(p))
}

// putPolicy stores the body (policy YAML, at most fleet.MaxPolicySize
// bytes) as the policy's next version.
func (h *Handler) putPolicy(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, fleet.MaxPolicySize+1))
	if err != nil {
		fail(w, fmt.Errorf("%w: body: %v", fleet.ErrInvalid, err))
		return
	}
	name := r.PathValue("name")
	v, err := h.svc.PutPolicy(r.Context(), name, body)
	if err != nil {
		fail(w, err)
		return
	}
	p, err := h.svc.Store().Policy(r.Context(), name, v)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, policyView(p))
}
