package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/lskel"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// runLoad implements `bpfattest load FILE [--socket PATH] [--pin DIR] [--wait D]`: it
// sends an artifact to the local agent, which measures, records and (when
// its policy allows) loads it. Exit 0 loaded; 1 refused or failed; 2 usage.
//
// Without --pin the created programs and maps are held by the agent alone:
// they run only as far as the loader attached them, stay in the kernel
// while the agent runs, and no other process can get a descriptor to
// attach them. A load without --pin says so on stderr; it is still a
// load (measured, and useful for programs the loader attaches itself, or
// for trying an artifact).
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("load", stderr,
		"usage: bpfattest load FILE [--socket PATH] [--pin DIR] [--wait D]",
		"\nThe agent measures, logs and loads the artifact. The programs and maps it creates are the agent's:",
		"without --pin, nothing else can attach them, and they leave the kernel when the agent stops.")
	socket := fs.String("socket", defaultSocket, "the agent's local socket")
	pin := fs.String("pin", "", "pin the created programs and maps in this bpffs directory (yours, unless you are root)")
	wait := fs.Duration("wait", 30*time.Second, "when the agent turns the load away at a budget (RESOURCE_EXHAUSTED, before any work), try again for this long; 0: do not")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	artifact, err := boundedfile.ReadFile(fs.Arg(0), lskel.MaxHeaderSize)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest load: %v\n", err)
		return exitUsage
	}
	conn, err := dialLocal(*socket)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest load: %v\n", err)
		return exitFailed
	}
	defer conn.Close()
	resp, err := loadWaiting(ctx, pb.NewLocalServiceClient(conn), &pb.LoadRequest{Artifact: artifact, PinDir: *pin}, *wait, stderr)
	if err != nil {
		st := status.Convert(err)
		// A refusal carries the measurement that was recorded.
		for _, d := range st.Details() {
			if lr, ok := d.(*pb.LoadResponse); ok {
				printLoad(stdout, lr)
			}
		}
		fmt.Fprintf(stderr, "bpfattest load: %s: %s\n", st.Code(), st.Message())
		return exitFailed
	}
	printLoad(stdout, resp)
	if resp.GetOutcome() != "loaded" {
		return exitFailed
	}
	if *pin == "" && len(resp.GetPrograms()) > 0 {
		fmt.Fprintln(stderr, "bpfattest load: note: no --pin: the agent holds the programs and maps; no other process can attach them, "+
			"and they leave the kernel when the agent stops. Load with --pin DIR (a directory on bpffs) to keep and attach them.")
	}
	return exitOK
}

// loadWaiting sends a load, and sends it again while the agent turns it
// away at one of its budgets (loads in flight, bytes, loads a second):
// such a refusal comes before any work, carries no measurement, and is
// counted in the agent's log, so trying again later is safe and hides
// nothing. Many loads at once (units starting together at boot) then take
// turns instead of failing. It waits from 50 ms doubling to 1 s, with
// jitter, for at most wait in all.
func loadWaiting(ctx context.Context, c pb.LocalServiceClient, req *pb.LoadRequest, wait time.Duration, stderr io.Writer) (*pb.LoadResponse, error) {
	deadline := time.Now().Add(wait)
	delay := 50 * time.Millisecond
	for tries := 1; ; tries++ {
		resp, err := c.Load(ctx, req)
		if err == nil || !atBudget(err) {
			return resp, err
		}
		if time.Now().Add(delay).After(deadline) {
			if tries > 1 {
				fmt.Fprintf(stderr, "bpfattest load: gave up after %d tries in %v\n", tries, wait)
			}
			return resp, err
		}
		sleep := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(sleep):
		}
		delay = min(2*delay, time.Second)
	}
}

// atBudget reports whether err is the agent turning a request away at a
// budget: RESOURCE_EXHAUSTED without a recorded measurement.
func atBudget(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return false
	}
	for _, d := range st.Details() {
		if _, measured := d.(*pb.LoadResponse); measured {
			return false
		}
	}
	return true
}

// printLoad writes the answer to a load, one fact per line.
func printLoad(w io.Writer, r *pb.LoadResponse) {
	fmt.Fprintf(w, "name:               %s\n", r.GetName())
	fmt.Fprintf(w, "scheme:             %s\n", r.GetScheme())
	fmt.Fprintf(w, "verdict:            %s\n", r.GetVerdict())
	fmt.Fprintf(w, "kernel check:       %s\n", r.GetKernelCheck())
	fmt.Fprintf(w, "measurement record: %d\n", r.GetMeasurementRecord())
	fmt.Fprintf(w, "result record:      %d\n", r.GetResultRecord())
	fmt.Fprintf(w, "outcome:            %s\n", r.GetOutcome())
	for _, p := range r.GetProblems() {
		fmt.Fprintf(w, "problem:            %s\n", p)
	}
	if r.GetStep() != "" || r.GetErrno() != 0 {
		fmt.Fprintf(w, "failed step:        %s errno %d\n", r.GetStep(), r.GetErrno())
	}
	if r.GetReason() != "" {
		fmt.Fprintf(w, "reason:             %s\n", r.GetReason())
	}
	if l := r.GetLoader(); l != nil {
		fmt.Fprintf(w, "loader:             id %d tag %s\n", l.GetId(), hex.EncodeToString(l.GetTag()))
	}
	for _, p := range r.GetPrograms() {
		fmt.Fprintf(w, "program:            id %d tag %s name %s\n", p.GetId(), hex.EncodeToString(p.GetTag()), p.GetName())
	}
	for _, m := range r.GetMaps() {
		fmt.Fprintf(w, "map:                id %d name %s\n", m.GetId(), m.GetName())
	}
	for _, p := range r.GetPinned() {
		fmt.Fprintf(w, "pinned:             %s\n", p)
	}
}
