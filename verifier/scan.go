package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/bpfattest/bpfattest/attest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Target is one host of a fleet: its name, its agent's address, and its
// state file and AK pin.
type Target struct {
	Name    string
	Address string
	State   string // the host's state file; "" keeps no state
	AK      string // an AK file to pin on first contact; "" for none
}

// ScanOptions configure Scan.
type ScanOptions struct {
	// Policy is evaluated on every verified host.
	Policy *attest.Policy
	// Dial connects to an agent's address; the connection is closed after
	// the host's verification.
	Dial func(address string) (*grpc.ClientConn, error)
	// Concurrency is how many hosts are verified at once; below 1 means 1.
	Concurrency int
	// Timeout bounds the verification of one host; 0 means none.
	Timeout time.Duration
	// TOFU trusts the AK an unpinned host presents (trust on first use).
	TOFU bool
	// Limits bound what is buffered for each host; Concurrency hosts are
	// fetched at once.
	Limits Limits
	// Done, when set, is called with each host's verdict as it is made,
	// from the scanning goroutines.
	Done func(*Verdict)
}

// Scan verifies every target as Check does, opts.Concurrency at a time,
// and returns their verdicts in the targets' order. Each verified host's
// state file is replaced.
func Scan(ctx context.Context, targets []Target, opts ScanOptions) []*Verdict {
	out := make([]*Verdict, len(targets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(opts.Concurrency, 1), len(targets)) {
		wg.Go(func() {
			for i := range next {
				out[i] = scanOne(ctx, &targets[i], &opts)
				if opts.Done != nil {
					opts.Done(out[i])
				}
			}
		})
	}
	for i := range targets {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// scanOne verifies one target within the per-host timeout.
func scanOne(ctx context.Context, t *Target, opts *ScanOptions) *Verdict {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	v := &Verdict{Host: t.Name, Agent: t.Address}
	h, err := pinTarget(t, opts.TOFU)
	if err != nil {
		v.Status, v.Reason = StatusUnverified, err.Error()
		return v
	}
	conn, err := opts.Dial(t.Address)
	if err != nil {
		v.Status, v.Reason = StatusUnverified, err.Error()
		return v
	}
	defer conn.Close()
	v, next := Check(ctx, pb.NewAttestationServiceClient(conn), h, opts.Policy, opts.Limits)
	v.Host, v.Agent = t.Name, t.Address
	if next != nil && t.State != "" {
		if err := WriteHost(t.State, next); err != nil {
			v.Status, v.Reason = StatusUnverified, err.Error()
		}
	}
	return v
}

// pinTarget returns the target's AK pin: its state file's when that pins
// one (an AK file must then name the same AK); otherwise its AK file's or,
// with tofu, the AK the agent presents.
func pinTarget(t *Target, tofu bool) (*Host, error) {
	if t.State != "" {
		h, err := ReadHost(t.State)
		switch {
		case err == nil && t.AK != "":
			ak, err := ReadAKFile(t.AK)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(ak, h.AKPublic) {
				return nil, fmt.Errorf("state %s pins another AK than %s", t.State, t.AK)
			}
			return h, nil
		case err == nil:
			return h, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	return Pin("", t.AK, tofu && t.AK == "")
}

// Report is the result of a scan.
type Report struct {
	Summary  Summary    `json:"summary"`
	Hosts    []*Verdict `json:"hosts"`
	Duration string     `json:"duration"`
}

// Summary counts a scan's hosts by status.
type Summary struct {
	Hosts        int `json:"hosts"`
	Compliant    int `json:"compliant"`
	NonCompliant int `json:"non_compliant"`
	Unreachable  int `json:"unreachable"`
	Unverified   int `json:"could_not_verify"`
}

// NewReport summarises the verdicts of a scan that took d.
func NewReport(vs []*Verdict, d time.Duration) *Report {
	r := &Report{Hosts: vs, Duration: d.Round(time.Millisecond).String()}
	r.Summary.Hosts = len(vs)
	for _, v := range vs {
		switch v.Status {
		case StatusCompliant:
			r.Summary.Compliant++
		case StatusNonCompliant:
			r.Summary.NonCompliant++
		case StatusUnreachable:
			r.Summary.Unreachable++
		default:
			r.Summary.Unverified++
		}
	}
	return r
}
