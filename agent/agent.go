package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/tpm"
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
	support bpfsys.SignatureSupport
	ekCert  []byte
	bootID  string
	started time.Time
	metrics *Metrics

	// mu is the pipeline lock: one load or sweep at a time, and the
	// registry of programs the log accounts for.
	mu      sync.Mutex
	closed  bool
	known   map[uint32]knownProg
	held    []*heldObjects // objects of measured loads the agent keeps alive
	heldFDs map[int]bool   // their descriptor numbers

	feed   feed
	quotes quoter

	// life guards the start of goroutines against Close.
	life     sync.Mutex
	stopping bool
	done     chan struct{} // closed by Close

	broken     chan struct{} // closed once the log refuses appends (journal broken)
	brokenOnce sync.Once
	probe      probe // Ready's TPM check
	workers    sync.WaitGroup
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
	a.quotes.init(a)
	a.feed.init()

	if a.trust, err = loadTrust(set.Trust); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	for _, w := range a.trust.Warnings() {
		a.log.Warn("trust store", "warning", w)
	}
	if !set.NoKernel {
		if a.support, err = bpfsys.ProbeSignedLoad(ctx); err != nil {
			return nil, fmt.Errorf("agent/new: %w", err)
		}
	}
	if a.bootID, err = bootID(); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
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
	if a.ak, err = a.dev.LoadOrCreateAK(tpm.AKOptions{Algorithm: set.akAlg, StateDir: dir}); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	if a.ekCert, err = ekCertificate(a.dev); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	a.jr, err = journal.Open(ctx, dir, a.dev, journal.Options{
		PCR:      set.PCR,
		Clock:    a.clock,
		BootID:   func() (string, error) { return a.bootID, nil },
		Version:  version(),
		NoKernel: set.NoKernel,
		Logger:   set.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	a.metrics.records.Store(a.jr.Len())

	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.rebuildLocked(ctx); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	if err := a.sweepLocked(ctx, discoveredAtStart); err != nil {
		return nil, fmt.Errorf("agent/new: %w", err)
	}
	a.log.Info("agent started", "config", set.Config, "kernel_signatures", a.kernelSignatures(),
		"log", a.jr.Path(), "records", a.metrics.records.Load(), "known_programs", len(a.known))
	return a, nil
}

// Run sweeps the kernel's programs every ObserverInterval until ctx is done
// or the agent is closed, and returns nil then. It returns an error wrapping
// ErrUnavailable when a finding cannot be recorded: the log is broken and the
// agent must be restarted (which reconciles it). With a negative interval it
// only waits.
func (a *Agent) Run(ctx context.Context) error {
	var tick <-chan time.Time
	if a.set.ObserverInterval > 0 && !a.set.NoKernel {
		t := time.NewTicker(a.set.ObserverInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.done:
			return nil
		case <-a.broken:
			return fmt.Errorf("agent/run: %w: the event log refuses appends: %w", ErrUnavailable, a.jr.Err())
		case <-tick:
		}
		if err := a.sweep(ctx); err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
				return nil // stopped in the middle of a sweep
			}
			if errors.Is(err, ErrUnavailable) {
				return fmt.Errorf("agent/run: %w", err)
			}
			if errors.Is(err, ErrClosed) {
				return nil
			}
			a.log.Warn("observer sweep failed", "err", err)
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
	a.feed.close()
	a.mu.Lock()
	defer a.mu.Unlock()
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
	if s.TPM != defaultTPM {
		return s.StateDir, nil
	}
	return simStateDir(s.StateDir)
}

// clock reads the TPM's clock information.
func (a *Agent) clock() (cel.ClockInfo, error) {
	c, err := a.dev.ClockInfo()
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
