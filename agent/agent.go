package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/progevents"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// Agent is a running measurement agent: one TPM, one event log, one kernel.
// It is safe for concurrent use. Loads and observer sweeps run one at a time
// under the pipeline lock; quotes run beside them, serialised with the log
// by the journal.
type Agent struct {
	set     settings
	log     *slog.Logger
	dev     *tpm.Device
	ak      *tpm.AK
	jr      *journal.Journal
	trust   *cms.TrustStore
	cache   *measure.Cache // verdicts and analyses of artifacts measured before, against trust
	support bpfsys.SignatureSupport
	ekCert  []byte
	bootID  string
	fw      firmwareLog    // this boot's firmware event log, read at start
	kernel  cel.KernelInfo // the kernel's facts, read at start
	started time.Time
	metrics *Metrics

	// events delivers the kernel's program events; nil when the observer
	// sweeps only (observer says which).
	events   *progevents.Watcher
	observer string // cel.ObserverEvents, ObserverSweep or ObserverNone
	tpmKind  string // cel.TPMDevice, TPMSwtpm or TPMSimulator

	// pipe is the pipeline lock (pipeline.go): one load's admission,
	// sweep or batch of events at a time, taken in turns by requester.
	// The registry of programs the log accounts for (known, accounted,
	// held, heldFDs) is guarded by pipe once no load is in flight
	// (quiesceLocked), and by flightMu while loads are (load.go): a load
	// is admitted under pipe, queues its measurement there, and runs
	// bpf() and records its result holding no global lock.
	pipe      pipeline
	closed    bool
	known     map[uint32]knownProg
	accounted accountedSet   // ids the log names that are not present
	held      []*heldObjects // objects of measured loads the agent keeps alive
	heldFDs   map[int]bool   // their descriptor numbers, and those loads in flight took

	flightMu sync.Mutex
	// flight holds one token per load admitted and not yet done
	// (MaxLoadsInFlight of them at most).
	flight chan struct{}

	feed   feed
	quotes quoter

	// refusals counts what is not recorded one by one (refusals.go);
	// flushMu serializes the writing of its records.
	refusals *refusalCounter
	flushMu  sync.Mutex

	// life guards the start of goroutines against Close.
	life     sync.Mutex
	stopping bool
	done     chan struct{} // closed by Close

	broken     chan struct{} // closed once the log refuses appends (journal broken)
	brokenOnce sync.Once
	probe      cached[struct{}] // Ready's TPM check, shared for probeMaxAge
	workers    sync.WaitGroup

	// sched takes turns at the TPM between loads, quotes, enrolment and
	// clock reads (tpmsched.go); id is what Identity answers but its clock,
	// fixed at start, and idClock its clock, read at most once every
	// identityClockMaxAge.
	sched   tpmSched
	id      Identity
	idClock cached[cel.ClockInfo]
}

// New opens the TPM, the attestation key and the event log of the current
// boot (reconciling it with the PCR), probes whether the kernel checks BPF
// signatures, records the agent's start, settles loads an earlier agent left
// without a result, and records every program already in the kernel that the
// log does not account for. It needs root (CAP_SYS_ADMIN and CAP_BPF),
// unless Config.NoKernel says to run without the kernel: then it neither
// probes nor observes.
func New(ctx context.Context, cfg Config) (_ *Agent, err error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	a := &Agent{set: set, log: set.Logger, started: time.Now(), metrics: newMetrics(),
		known: map[uint32]knownProg{}, heldFDs: map[int]bool{}, done: make(chan struct{}), broken: make(chan struct{})}
	a.flight = make(chan struct{}, MaxLoadsInFlight)
	a.sched.m = a.metrics
	a.quotes.init(a)
	a.feed.init()
	a.refusals = newRefusalCounter(set.RefusalLogRate, set.RefusalLogBurst)

	if a.trust, err = loadTrust(set.Trust); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	a.cache = measure.NewCache(measure.CacheLimits{})
	a.observer, a.tpmKind = cel.ObserverNone, tpmKind(set.TPM)
	for _, w := range a.trust.Warnings() {
		a.log.Warn("trust store", "warning", w)
	}
	if !set.NoKernel {
		if a.support, err = bpfsys.ProbeSignedLoad(ctx); err != nil {
			return nil, fmt.Errorf("agent/new: %w", err)
		}
		// The event watcher opens before the baseline sweep, so nothing
		// falls between the two.
		if err := a.openObserver(); err != nil {
			return nil, fmt.Errorf("agent/new: %w", err)
		}
	}
	defer func() {
		if err != nil && a.events != nil {
			a.events.Close()
		}
	}()
	if a.bootID, err = bootID(); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	var problems []string
	if a.kernel, problems = readKernelInfo(hostKernelFiles()); len(problems) > 0 {
		a.log.Warn("kernel facts not read; the boot header records them as unread", "problems", problems)
	}
	a.fw = readFirmwareLog(set)
	dir, err := stateDir(set)
	if err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	if a.dev, err = tpm.Open(ctx, set.TPM); err != nil {
		return nil, fmt.Errorf("agent/new: %w: %w", ErrUnavailable, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.closeResources())
		}
	}()
	if set.SimulatorBoot != nil {
		if err = set.SimulatorBoot(a.dev); err != nil {
			return nil, fmt.Errorf("agent/new: simulator boot: %w", err)
		}
	}
	if a.ak, err = a.dev.LoadOrCreateAK(tpm.AKOptions{Algorithm: set.akAlg, StateDir: dir}); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	if a.ekCert, err = ekCertificate(a.dev); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	a.id = Identity{
		AKPublic:      slices.Clone(a.ak.PublicArea()),
		AKAlgorithm:   set.AKAlgorithm,
		EKCertificate: slices.Clone(a.ekCert),
		PCR:           set.PCR,
		Banks:         a.dev.Banks(),
		BootID:        a.bootID,
		TPMKind:       a.tpmKind,
	}
	a.jr, err = journal.Open(ctx, dir, schedTPM{dev: a.dev, sched: &a.sched}, journal.Options{
		PCR:      set.PCR,
		Clock:    a.clock,
		BootID:   func() (string, error) { return a.bootID, nil },
		Version:  version(),
		NoKernel: set.NoKernel,
		Observer: a.observer,
		TPM:      a.tpmKind,
		Kernel:   &a.kernel,
		// A log that no longer replays to the PCR (someone else extended
		// it) is served as it is, and loads are refused: the agent stays
		// up and its verifiers see the mismatch, instead of a restart loop.
		KeepMismatched: true,
		Logger:         set.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	a.metrics.records.Store(a.jr.Len())
	if err := a.jr.Mismatch(); err != nil {
		a.log.Error("the event log does not replay to the pcr: serving it as it is and refusing loads", "err", err)
		return a, nil
	}

	a.pipe.lockAlways(ownerAgent)
	defer a.pipe.unlock()
	if err := a.rebuildLocked(ctx); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	if err := a.checkKnownLocked(ctx); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	if err := a.sweepLocked(ctx, measure.DiscoveredAtStart); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	if err := a.observeEventsLocked(ctx); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	a.log.Info("agent started", "config", set.Config, "kernel_signatures", a.kernelSignatures(),
		"observer", a.observer, "tpm_kind", a.tpmKind,
		"log", a.jr.Path(), "records", a.metrics.records.Load(), "known_programs", len(a.known),
		"boot_pcrs", set.bootPCRs, "firmware_log", a.fw.describe())
	switch {
	case a.fw.log == nil && a.fw.path != "":
		a.log.Warn("no firmware event log to serve: verifiers see no boot chain", "reason", a.fw.problem)
	case a.fw.log == nil:
		a.log.Info("no firmware event log to serve: verifiers see no boot chain", "reason", a.fw.problem)
	}
	return a, nil
}

// openObserver opens the kernel's program events, or falls back to sweeps
// where they cannot be opened, as Config.Observer allows.
func (a *Agent) openObserver() error {
	a.observer = cel.ObserverSweep
	if a.set.Observer == ObserveSweep {
		return nil
	}
	w, err := progevents.Open(progevents.Options{RingPages: a.set.EventRingPages})
	if err != nil {
		if a.set.Observer == ObserveEvents {
			return fmt.Errorf("program events: %w", err)
		}
		a.log.Warn("kernel program events unavailable: observing by sweeps only; a program that lives between two sweeps is not seen",
			"err", err, "interval", a.set.ObserverInterval)
		return nil
	}
	a.events, a.observer = w, cel.ObserverEvents
	return nil
}

// tpmKind classifies a TPM spec for the agent-start record.
func tpmKind(spec string) string {
	switch {
	case spec == simTPM:
		return cel.TPMSimulator
	case strings.HasPrefix(spec, "swtpm:"):
		return cel.TPMSwtpm
	}
	return cel.TPMDevice
}

// refusalFlushInterval is how often Run writes pending counted refusals.
const refusalFlushInterval = time.Second

// Run observes the kernel until ctx is done or the agent is closed, and
// returns nil then: it handles the kernel's program events as they come
// (when the observer has them), sweeps the kernel's programs every
// ObserverInterval, and writes the counts of refusals not recorded one by
// one every second while there are any. It returns an error wrapping ErrUnavailable when a
// finding cannot be recorded because the log is broken: the agent must be
// restarted (which reconciles it). A log that no longer replays to the PCR
// is not broken in that sense: the agent stays up, serving it and refusing
// loads. With a negative interval it only handles events.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var tick <-chan time.Time
	if a.set.ObserverInterval > 0 && !a.set.NoKernel {
		t := time.NewTicker(a.set.ObserverInterval)
		defer t.Stop()
		tick = t.C
	}
	flush := time.NewTicker(refusalFlushInterval)
	defer flush.Stop()
	evErr := make(chan error, 1)
	if a.events != nil {
		go func() { evErr <- a.watchEvents(ctx) }()
		defer func() { cancel(); <-evErr }()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.done:
			return nil
		case <-a.broken:
			return fmt.Errorf("agent/run: %w: the event log refuses appends: %w", ErrUnavailable, a.jr.Err())
		case err := <-evErr:
			evErr <- nil // for the deferred receive
			if err != nil {
				return fmt.Errorf("agent/run: %w", err)
			}
			return nil
		case <-flush.C:
			if err := a.flushRefusals(ctx); err != nil {
				if errors.Is(err, ErrUnavailable) && a.jr.Err() != nil {
					return fmt.Errorf("agent/run: %w", err)
				}
				if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
					a.log.Warn("counted refusals not recorded yet", "err", err)
				}
			}
			continue
		case <-tick:
		}
		if err := a.sweep(ctx, ownerAgent); err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
				return nil // stopped in the middle of a sweep
			}
			if errors.Is(err, ErrUnavailable) && a.jr.Err() != nil {
				return fmt.Errorf("agent/run: %w", err)
			}
			if errors.Is(err, ErrClosed) {
				return nil
			}
			a.log.Warn("observer sweep failed", "err", err)
		}
	}
}

// watchEvents handles the kernel's program events until ctx is done or the
// agent closes (nil), or the log breaks (an error wrapping ErrUnavailable).
func (a *Agent) watchEvents(ctx context.Context) error {
	for {
		if err := a.events.Wait(ctx); err != nil {
			if ctx.Err() != nil || errors.Is(err, progevents.ErrClosed) {
				return nil
			}
			return fmt.Errorf("program events: %w", err)
		}
		// Let a burst finish: programs that come and go within the
		// window share one record instead of costing two each.
		if w := a.set.EventWindow; w > 0 {
			t := time.NewTimer(w)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-a.done:
				t.Stop()
				return nil
			}
		}
		if err := a.lockPipe(ctx, ownerAgent, pipeObserver); err != nil {
			return nil // ctx ended
		}
		if a.closed {
			a.pipe.unlock()
			return nil
		}
		a.quiesceLocked()
		err := a.observeEventsLocked(ctx)
		a.pipe.unlock()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrUnavailable) && a.jr.Err() != nil:
			return err
		default:
			a.log.Warn("program events: handling failed", "err", err)
		}
	}
}

// Close stops the agent: it waits for quotes in flight, releases the
// programs and maps the agent holds (unpinned programs of measured loads
// leave the kernel now), and closes the log and the TPM.
func (a *Agent) Close() error {
	a.life.Lock()
	if a.stopping {
		a.life.Unlock()
		return ErrClosed
	}
	a.stopping = true
	close(a.done)
	a.life.Unlock()
	a.workers.Wait()
	// Counted requests are written before the log closes: a client told
	// of a refusal finds it in the log.
	if err := a.flushRefusals(context.Background()); err != nil {
		a.log.Error("counted refusals could not be recorded before closing", "err", err)
	}
	a.feed.close()
	a.pipe.lockAlways(ownerAgent)
	defer a.pipe.unlock()
	a.quiesceLocked() // loads in flight finish (and record their results)
	a.closed = true
	return a.closeResources()
}

// spawn runs fn in a goroutine that Close waits for, unless the agent is
// closing.
func (a *Agent) spawn(fn func()) error {
	a.life.Lock()
	defer a.life.Unlock()
	if a.stopping {
		return ErrClosed
	}
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		fn()
	}()
	return nil
}

// closeResources releases the held objects, the journal and the TPM.
func (a *Agent) closeResources() error {
	var errs []error
	for _, h := range a.held {
		errs = append(errs, h.Close())
	}
	a.held, a.heldFDs = nil, map[int]bool{}
	if a.events != nil {
		if err := a.events.Close(); err != nil && !errors.Is(err, progevents.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if a.jr != nil {
		errs = append(errs, a.jr.Close())
	}
	if a.dev != nil {
		errs = append(errs, a.dev.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent/close: %w", err)
	}
	return nil
}

func loadTrust(paths []string) (*cms.TrustStore, error) {
	if len(paths) == 0 {
		return cms.NewTrustStore(), nil
	}
	t, err := cms.LoadTrust(paths...)
	if err != nil {
		return nil, fmt.Errorf("trust: %w: %w", ErrInvalid, err)
	}
	return t, nil
}

// stateDir returns the directory for the journal and the AK. A simulator's
// state cannot outlive it, so each run gets a fresh one (simStateDir).
func stateDir(s settings) (string, error) {
	if s.TPM != simTPM {
		return s.StateDir, nil
	}
	return simStateDir(s.StateDir)
}

// clock reads the TPM's clock information, in the clock class's turn.
func (a *Agent) clock() (cel.ClockInfo, error) {
	var c tpm.ClockInfo
	err := a.sched.do(context.Background(), tpmClock, func() error {
		var err error
		c, err = a.dev.ClockInfo()
		return err
	})
	return cel.ClockInfo(c), err
}

// ekCertificate reads the RSA or else the ECC EK certificate; nil if the TPM
// has neither.
func ekCertificate(d *tpm.Device) ([]byte, error) {
	for _, idx := range []uint32{tpm.EKCertIndexRSA2048, tpm.EKCertIndexECCP256} {
		c, err := d.EKCertificate(idx)
		if err != nil {
			return nil, err
		}
		if c != nil {
			return c, nil
		}
	}
	return nil, nil
}

// bootID reads the kernel's random boot id (proc(5)).
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// version is the module version of the binary, written in agent-start
// records.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
