package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
)

// MaxArtifactSize bounds LoadRequest.Artifact: the largest header the
// parser reads (bundles are smaller).
const MaxArtifactSize = lskel.MaxHeaderSize

// LoadRequest asks the agent to measure and load one light skeleton.
type LoadRequest struct {
	// Artifact is a bpftool .lskel.h or a bundle (docs/bundle-format.md),
	// at most MaxArtifactSize bytes.
	Artifact []byte
	// Requester says who asked; the API layer fills it from the peer's
	// credentials. It is part of the measurement.
	Requester measure.Requester
	// PinDir, when set, is an absolute path to a bpffs directory where the
	// created programs and maps are pinned (see pin for the names); a
	// requester other than root must own it (see openPinDir). Pinned
	// objects outlive the agent; unpinned ones live until the agent closes.
	PinDir string
}

// LoadResponse is what a load did. For a refused load or a kernel failure
// it comes back with the error: the records were written all the same.
type LoadResponse struct {
	MeasurementRecord uint64
	ResultRecord      uint64
	Inspection        *measure.Inspection // verdict, chain, programs
	Result            measure.LoadResult
	Pinned            []string
}

// Load measures an artifact, records the measurement (durable, then extended
// into the PCR), decides, and only then hands it to the kernel; the kernel's
// answer is recorded too. The order is fixed and documented in
// docs/threat-model.md:
//
//	parse → inspect → decide → record measurement → [refused: record, stop]
//	→ bpf() → take the created objects → record result → pin
//
// Errors: ErrInvalid (the request cannot be measured; nothing recorded),
// ErrUnavailable (the log or the TPM failed; nothing loaded), ErrRefused (the
// policy said no; measurement and refusal recorded, nothing loaded; past the
// requester's Config.RefusalLogRate, counted in the next "refusals counted"
// record instead, and the response has no record numbers),
// ErrKernel wrapping the kernel's or loader's error (*bpfsys.SyscallError,
// *bpfsys.LoaderError; both records written, nothing kept), ErrPin (loaded
// and recorded, not pinned; the agent keeps the objects), or an error of its
// own after the loader ran (it could not take the objects the loader
// created: all released, the result recorded as aborted, nothing kept); the
// last four come with the LoadResponse.
func (a *Agent) Load(ctx context.Context, req LoadRequest) (*LoadResponse, error) {
	start := time.Now()
	pins, err := openPinDir(req.PinDir, req.Requester.UID)
	if err != nil {
		a.metrics.load("invalid", "")
		return nil, fmt.Errorf("agent/load: %w", err)
	}
	defer pins.Close() // after the objects are pinned (or not) by path-fd
	in, err := inspect(req, a.measureOptions(req.Requester))
	if err != nil {
		a.metrics.load("invalid", "")
		return nil, fmt.Errorf("agent/load: %w", err)
	}
	name := in.Measurement.Name
	if err := a.usable(); err != nil {
		return nil, err
	}
	if err := a.jr.Mismatch(); err != nil {
		a.metrics.load("refused", in.Measurement.Verdict.String())
		return nil, fmt.Errorf("agent/load %s: %w: %w", name, ErrLogMismatch, err)
	}
	if refusal := a.set.decide(in); refusal != "" && !a.refusals.recordable(req.Requester.UID) {
		// Past the requester's rate of refusal records: refused as any
		// other, and counted in the next "refusals counted" record
		// instead of two records of its own.
		verdict := in.Measurement.Verdict
		a.refusals.count(req.Requester.UID, req.Requester.GID, true, verdict)
		a.metrics.counted("refused")
		a.metrics.load("refused", verdict.String())
		reason := refusal + " (counted, not recorded one by one: over the requester's rate of refusal records)"
		return &LoadResponse{Inspection: in, Result: measure.LoadResult{Outcome: measure.OutcomeRefused, Reason: reason}},
			fmt.Errorf("agent/load %s: %w: %s", name, ErrRefused, reason)
	}
	content, err := in.Measurement.MarshalBinary()
	if err != nil {
		a.metrics.load("invalid", "")
		return nil, fmt.Errorf("agent/load %s: %w: encode measurement: %w", name, ErrInvalid, err)
	}
	// Admitted in turns by requester (pipeline.go): a flood of one
	// requester's loads queues its measurements behind another's by one
	// load of each, not by the flood. The measurement takes its place in
	// the log's queue in that turn; the load then waits for its commit,
	// runs bpf() and records its result holding no global lock, so loads
	// share commits (docs/crash-safety.md §7).
	queued := time.Now()
	if err := a.lockPipe(ctx, requesterOwner(req.Requester.UID), pipeLoad); err != nil {
		a.metrics.load("unavailable", in.Measurement.Verdict.String())
		return nil, fmt.Errorf("agent/load %s: waiting for the loads ahead (nothing recorded, nothing loaded): %w", name, err)
	}
	waited := time.Since(queued)
	if a.closed {
		a.pipe.unlock()
		return nil, ErrClosed
	}
	if err := a.jr.Mismatch(); err != nil {
		a.pipe.unlock()
		a.metrics.load("refused", in.Measurement.Verdict.String())
		return nil, fmt.Errorf("agent/load %s: %w: %w", name, ErrLogMismatch, err)
	}
	// Holding the pipeline: while every slot is taken the next turn waits
	// too, and this one gives up if its caller does.
	select {
	case a.flight <- struct{}{}:
		a.metrics.loadsInFlight.Add(1)
	case <-ctx.Done():
		a.pipe.unlock()
		a.metrics.load("unavailable", in.Measurement.Verdict.String())
		return nil, fmt.Errorf("agent/load %s: waiting for one of the %d loads in flight to land (nothing recorded, nothing loaded): %w",
			name, MaxLoadsInFlight, context.Cause(ctx))
	}
	enqueued := time.Now()
	pending, err := a.jr.Enqueue(cel.BPFMeasurement, content)
	a.pipe.unlock()
	defer a.land()
	if err != nil {
		a.metrics.load("unavailable", in.Measurement.Verdict.String())
		return nil, fmt.Errorf("agent/load %s: %w: %w", name, ErrUnavailable, err)
	}
	resp, err := a.loadInFlight(ctx, pins, in, content, pending, enqueued)
	verdict := in.Measurement.Verdict.String()
	switch {
	case resp == nil:
		a.metrics.load("unavailable", verdict)
	default:
		a.metrics.load(resp.Result.Outcome.String(), verdict)
	}
	a.metrics.loadTime.observe(time.Since(start))
	if err != nil {
		return resp, fmt.Errorf("agent/load %s: %w", name, err)
	}
	a.log.Info("loaded", "name", name, "verdict", verdict, "measurement", resp.MeasurementRecord,
		"result", resp.ResultRecord, "programs", len(resp.Result.Programs), "took", time.Since(start), "waited", waited)
	return resp, nil
}

// measureOptions are the options of the measurement of a load by r now.
func (a *Agent) measureOptions(r measure.Requester) measure.Options {
	return measure.Options{Trust: a.trust, Cache: a.cache, Load: &measure.Load{
		Requester:      requester(r),
		Context:        bpfsys.NewCtx,
		BootTimeNS:     bpfsys.BootTimeNS(),
		KernelVerifies: a.support == bpfsys.SignaturesChecked,
	}}
}

// inspect is the pure part of a load: parse, verify and measure, the
// loader's context included.
func inspect(req LoadRequest, opts measure.Options) (*measure.Inspection, error) {
	if len(req.Artifact) == 0 {
		return nil, fmt.Errorf("%w: empty artifact", ErrInvalid)
	}
	if len(req.Artifact) > MaxArtifactSize {
		return nil, fmt.Errorf("%w: artifact of %d bytes exceeds %d", ErrInvalid, len(req.Artifact), MaxArtifactSize)
	}
	art, err := lskel.Load(req.Artifact)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	in, err := measure.Inspect(art, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", art.Name, ErrInvalid, err)
	}
	return in, nil
}

// MaxLoadsInFlight bounds the loads between their admission and their
// result record: the bpf() calls and objects of loads the agent runs at
// once. Further loads wait for their turn of the pipeline.
const MaxLoadsInFlight = 64

// land ends a load in flight (admitted by Load); the observer and Close
// wait for the loads in flight to land (quiesceLocked).
func (a *Agent) land() {
	a.metrics.loadsInFlight.Add(-1)
	<-a.flight
}

// quiesceLocked waits until no load is in flight. The caller holds the
// pipeline, so no load is admitted meanwhile: on return the registry of
// programs (known, accounted, held) is the caller's alone until it
// releases the pipeline.
func (a *Agent) quiesceLocked() {
	// Take every slot as the loads in flight give theirs back, then
	// return them: none can be taken meanwhile without the pipeline.
	for range MaxLoadsInFlight {
		a.flight <- struct{}{}
	}
	for range MaxLoadsInFlight {
		<-a.flight
	}
}

// loadInFlight runs the effects of an admitted load, whose measurement
// (content) is queued in the log as pending: it waits for the measurement
// to be durable and extended, then runs bpf() and records the result,
// holding no global lock; what it does to the registry of programs it
// does under flightMu. It returns a nil response when nothing could be
// recorded.
func (a *Agent) loadInFlight(ctx context.Context, pins *bpfsys.PinDir, in *measure.Inspection, content []byte, pending *journal.Pending, enqueued time.Time) (*LoadResponse, error) {
	m := &in.Measurement
	art := in.Artifact
	refusal := a.set.decide(in)

	mrec, err := a.waitRecord(ctx, pending, enqueued)
	if err != nil {
		return nil, err // fail closed: no bpf() call
	}
	resp := &LoadResponse{MeasurementRecord: mrec.RecNum, Inspection: in}
	res := measure.LoadResult{MeasurementRecord: mrec.RecNum, MeasurementSHA256: sha256.Sum256(content)}
	// The measurement is in the PCR: from here on the answer is recorded
	// even if the caller gives up.
	ctx = context.WithoutCancel(ctx)

	if refusal != "" {
		res.Outcome, res.Reason = measure.OutcomeRefused, refusal
		if err := a.recordResult(ctx, resp, res); err != nil {
			return nil, err
		}
		return resp, fmt.Errorf("%w: %s", ErrRefused, refusal)
	}

	breq := bpfsys.LoadRequest{Insns: art.Insns, Data: art.Data, ExclHash: art.ExclHash, Ctx: in.LoaderContext.Bytes}
	if in.SubmitSignature() {
		breq.Signature, breq.KeyringID = art.Signature, art.KeyringID
	}
	kres, runErr := bpfsys.Run(ctx, breq, a.set.hook)
	a.flightMu.Lock() // takeObjects checks and claims descriptors (heldFDs)
	held, takeErr := a.settle(&res, kres, runErr, in.LoaderContext)
	a.flightMu.Unlock()
	if takeErr != nil {
		// The loader ran and the agent could not take (or release) what it
		// created: settle has released all of it it could, and the log
		// says so, as for any load that did not stand.
		res.Outcome, res.Step, res.Errno = measure.OutcomeAborted, "", 0
		res.Reason = "the agent could not take the objects the loader created; released: " + takeErr.Error()
		if err := a.recordResult(ctx, resp, res); err != nil {
			return nil, errors.Join(err, takeErr, runErr)
		}
		a.flightMu.Lock()
		a.passOver(res)
		a.flightMu.Unlock()
		return resp, fmt.Errorf("take the loader's objects: %w", errors.Join(takeErr, runErr))
	}
	if a.set.afterRun != nil {
		a.set.afterRun(&res)
	}
	// The programs the kernel now holds must be the measured ones; if
	// not, they are released before anything can use them, and the
	// result says why.
	var (
		mismatch   []string
		releaseErr error
	)
	if res.Outcome == measure.OutcomeLoaded {
		if mismatch = measure.Binding(m, res.Programs); mismatch != nil {
			releaseErr = a.release(held) // the result is recorded whatever it says
			held = nil
			res.Outcome, res.Reason = measure.OutcomeMismatch, strings.Join(mismatch, "; ")
		}
	}
	if err := a.recordResult(ctx, resp, res); err != nil {
		// Nothing may run that the log does not show.
		return nil, errors.Join(err, a.release(held), releaseErr)
	}
	a.flightMu.Lock()
	defer a.flightMu.Unlock()
	a.passOver(res)
	switch {
	case releaseErr != nil:
		return resp, fmt.Errorf("release mismatched programs: %w", releaseErr)
	case mismatch != nil:
		return resp, fmt.Errorf("%w: %s", ErrMismatch, res.Reason)
	case runErr != nil && res.Outcome == measure.OutcomeAborted:
		return resp, runErr // stopped before the kernel answered
	case runErr != nil:
		return resp, fmt.Errorf("%w: %w", ErrKernel, runErr)
	}
	for _, p := range res.Programs {
		a.known[p.ID] = knownProg{record: resp.ResultRecord, tag: p.Tag, typ: p.Type, name: p.Name, origin: fromMeasuredLoad}
	}
	if pins == nil {
		a.hold(held)
		return resp, nil
	}
	if resp.Pinned, err = pin(held, res.Programs, res.Maps, pins); err != nil {
		a.hold(held) // the load stands; the agent keeps the objects
		return resp, fmt.Errorf("%w: %w", ErrPin, err)
	}
	return resp, a.releaseLocked(held)
}

// release closes the objects of a load in flight that the agent does not
// keep, and gives up its claim on their descriptors.
func (a *Agent) release(h *heldObjects) error {
	a.flightMu.Lock()
	defer a.flightMu.Unlock()
	return a.releaseLocked(h)
}

// releaseLocked is release with flightMu held (or no load in flight).
func (a *Agent) releaseLocked(h *heldObjects) error {
	if h == nil {
		return nil
	}
	for _, fd := range h.fds {
		delete(a.heldFDs, fd)
	}
	return h.Close()
}

// settle fills res with the kernel's answer and takes ownership of the
// objects the loader created (claiming their descriptors in heldFDs;
// flightMu must be held). The loader and its data map are closed. A
// failed load keeps nothing. An error is the agent's own failure to take
// or release the objects: then nothing of the load is held, res names
// what the kernel created as far as it is known, and the caller records
// the load as aborted.
func (a *Agent) settle(res *measure.LoadResult, kres *bpfsys.LoadResult, runErr error, lc measure.LoaderContext) (*heldObjects, error) {
	if kres == nil { // the request never reached the kernel
		res.Outcome, res.Reason = measure.OutcomeAborted, runErr.Error()
		return nil, nil
	}
	if kres.MapID != 0 {
		res.DataMap = &measure.KernelObject{ID: kres.MapID, Type: uint32(ebpf.Array), Name: loaderMapName}
	}
	if kres.LoaderID != 0 {
		res.Loader = &measure.KernelObject{ID: kres.LoaderID, Type: uint32(ebpf.Syscall), Tag: kres.LoaderTag, Name: loaderProgName}
	}
	closeErr := errors.Join(kres.LoaderFD.Close(), kres.MapFD.Close())

	var held *heldObjects
	if len(kres.CtxOut) > 0 {
		h, progs, maps, err := a.takeObjects(kres.CtxOut, lc.Maps, lc.Programs)
		if err != nil {
			res.Programs, res.Maps = progs, maps
			return nil, errors.Join(err, closeErr)
		}
		// Its descriptors are this load's now: no other load in flight
		// may take them (takeObjects skips heldFDs).
		for _, fd := range h.fds {
			a.heldFDs[fd] = true
		}
		// A failed load's programs are released at once, but they existed:
		// the result names them.
		res.Programs, res.Maps = progs, maps
		if runErr == nil {
			held = h
		} else if err := a.releaseLocked(h); err != nil {
			closeErr = errors.Join(closeErr, err)
		}
	}
	if closeErr != nil {
		return nil, errors.Join(closeErr, a.releaseLocked(held))
	}

	var (
		se    *bpfsys.SyscallError
		le    *bpfsys.LoaderError
		errno syscall.Errno
	)
	switch {
	case runErr == nil:
		res.Outcome = measure.OutcomeLoaded
	case errors.As(runErr, &le):
		res.Outcome, res.Step, res.Errno = measure.OutcomeLoaderError, kres.Step.String(), uint32(-le.Retval)
	case errors.As(runErr, &se):
		res.Outcome, res.Step, res.Errno = measure.OutcomeKernelError, se.Step.String(), uint32(se.Errno)
	case errors.As(runErr, &errno):
		res.Outcome, res.Step, res.Errno = measure.OutcomeKernelError, kres.Step.String(), uint32(errno)
	default: // cancelled, or stopped by a hook without an errno
		res.Outcome, res.Step, res.Reason = measure.OutcomeAborted, kres.Step.String(), runErr.Error()
	}
	return held, nil
}

// passOver marks the loader, and the programs of a load that did not
// stand, as accounted for: they were released, the result record names
// them, and their kernel events are passed over.
func (a *Agent) passOver(res measure.LoadResult) {
	if res.Loader != nil {
		a.accounted.add(res.Loader.ID)
	}
	if res.Outcome != measure.OutcomeLoaded {
		for _, p := range res.Programs {
			a.accounted.add(p.ID)
		}
	}
}

// recordResult appends the result record and fills resp.
func (a *Agent) recordResult(ctx context.Context, resp *LoadResponse, res measure.LoadResult) error {
	content, err := res.MarshalBinary()
	if err != nil {
		return fmt.Errorf("%w: encode result: %w", ErrUnavailable, err)
	}
	rec, err := a.appendRecord(ctx, cel.BPFLoadResult, content)
	if err != nil {
		return err
	}
	resp.ResultRecord, resp.Result = rec.RecNum, res
	return nil
}

// hold keeps h's objects alive until Close (their descriptors are claimed
// already: settle). flightMu must be held, or no load be in flight.
func (a *Agent) hold(h *heldObjects) {
	if h == nil {
		return
	}
	a.held = append(a.held, h)
	for _, fd := range h.fds {
		a.heldFDs[fd] = true
	}
}

// requester returns r, or nil when the API layer said nothing.
func requester(r measure.Requester) *measure.Requester {
	if r.UID == 0 && r.GID == 0 && r.PID == 0 && r.Exe == "" && len(r.ExeSHA256) == 0 {
		return nil
	}
	return &r
}
