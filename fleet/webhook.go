package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bpfattest/bpfattest/fleet/store"
)

// Webhook headers. The signature header is "t=UNIX,v1=HEX": HEX is the
// HMAC-SHA256, keyed with the shared secret, of the decimal UNIX
// timestamp, a '.', and the request body; receivers recompute it
// (VerifyWebhook), refuse timestamps too far from their clock, and drop
// repeated event ids (delivery is at least once).
const (
	SignatureHeader = "Bpfattest-Signature"
	EventIDHeader   = "Bpfattest-Event-Id"
)

// Webhook is the JSON body of a transition event.
type Webhook struct {
	// ID identifies the event across retries.
	ID    string    `json:"id"`
	Type  string    `json:"type"` // "transition"
	Agent string    `json:"agent"`
	From  string    `json:"from"` // "" for a first verdict
	To    string    `json:"to"`
	At    time.Time `json:"at"`
	// Reason is the verdict's reasons in one line; Verdict the verdict
	// (verifier.Verdict JSON) when the service kept it.
	Reason  string          `json:"reason,omitempty"`
	Verdict json.RawMessage `json:"verdict,omitempty"`
}

// webhookBody is the event of a history row.
func webhookBody(h *store.HistoryRow) ([]byte, error) {
	w := Webhook{ID: fmt.Sprintf("transition-%d", h.ID), Type: "transition", Agent: h.Agent, From: h.PrevStatus, To: h.Status,
		At: h.At.UTC(), Reason: h.Reason}
	if json.Valid(h.Verdict) {
		w.Verdict = h.Verdict
	}
	return json.Marshal(w)
}

// SignWebhook returns the signature header value of body at t.
func SignWebhook(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ErrWebhookSignature is wrapped by every VerifyWebhook failure.
var ErrWebhookSignature = errors.New("webhook signature")

// VerifyWebhook checks a signature header against the body, the secret,
// and a timestamp within tolerance of now.
func VerifyWebhook(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: no timestamp", ErrWebhookSignature)
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %d is %v from now", ErrWebhookSignature, t, d)
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, webhookMAC(secret, ts, body)) {
		return fmt.Errorf("%w: does not match", ErrWebhookSignature)
	}
	return nil
}

// deliverBatch bounds the deliveries one node claims at a time.
const deliverBatch = 16

// deliver sends the outbox's due webhooks until ctx is done.
func (s *Service) deliver(ctx context.Context) {
	if len(s.cfg.Webhooks) == 0 {
		return
	}
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		ds, err := s.st.ClaimDeliveries(ctx, s.cfg.Replica, time.Now(), s.cfg.WebhookTimeout+5*time.Second, deliverBatch)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("claim deliveries", "err", err)
		}
		for i := range ds {
			s.deliverOne(ctx, &ds[i])
		}
		if len(ds) == deliverBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deliverOne makes one attempt: a 2xx answer delivers it; otherwise it is
// retried after a delay doubling from 1 s up to 10 min, and given up
// after WebhookAttempts attempts.
func (s *Service) deliverOne(ctx context.Context, d *store.Delivery) {
	err := s.post(ctx, d)
	now := time.Now()
	if err == nil {
		s.metrics.deliveries.WithLabelValues("ok").Inc()
		if err := s.st.Delivered(ctx, d.ID, s.cfg.Replica, now); err != nil && ctx.Err() == nil {
			s.log.Warn("webhook delivered, not recorded (it will be sent again)", "id", d.ID, "err", err)
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	var next time.Time
	result := "failed"
	if d.Attempts < s.cfg.WebhookAttempts {
		delay := time.Duration(min(float64(time.Second)*math.Pow(2, float64(min(d.Attempts-1, 20))), float64(10*time.Minute)))
		next = now.Add(delay + time.Duration(mrand.Int64N(int64(delay)/4+1)))
		result = "retry"
	}
	s.metrics.deliveries.WithLabelValues(result).Inc()
	s.log.Warn("webhook", "url", d.URL, "event", d.Event.ID, "attempt", d.Attempts, "result", result, "err", err)
	msg := err.Error()
	if len(msg) > 512 {
		msg = strings.ToValidUTF8(msg[:512], "")
	}
	if err := s.st.Retry(ctx, d.ID, s.cfg.Replica, next, msg); err != nil && ctx.Err() == nil {
		s.log.Warn("webhook retry", "id", d.ID, "err", err)
	}
}

func (s *Service) post(ctx context.Context, d *store.Delivery) error {
	body, err := webhookBody(&d.Event)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bpfattest-verifierd")
	req.Header.Set(EventIDHeader, fmt.Sprintf("transition-%d", d.Event.ID))
	req.Header.Set(SignatureHeader, SignWebhook(s.cfg.WebhookSecret, body, time.Now()))
	rsp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(rsp.Body, 64<<10))
	rsp.Body.Close()
	if rsp.StatusCode/100 != 2 {
		return fmt.Errorf("status %s", rsp.Status)
	}
	return nil
}
