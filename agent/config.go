package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/measure"
)

// DefaultMaxQuoteLog is Config.MaxQuoteLog's default: 16 MiB of records,
// about 40,000, far more than a host's boot usually holds, small enough
// that concurrent new verifiers cannot make the agent hold much memory.
const DefaultMaxQuoteLog = 16 << 20

// DefaultQuoteTPMShare is Config.QuoteTPMShare's default: quotes take at
// most half the TPM's time (with a 200 ms quote, 2.5 quotes a second, each
// serving every request that waited for it), the other half is left to
// the log's extends and to the host's other users of the TPM.
const DefaultQuoteTPMShare = 0.5

// Config configures New. The zero value plus a StateDir is a working,
// fail-closed agent on the in-process simulator.
type Config struct {
	// TPM names the TPM, and must be given: a device such as
	// "/dev/tpmrm0" in production, "swtpm:unix:PATH" for a software TPM,
	// or "sim" for the in-process simulator (demos and tests: insecure by
	// construction, forgotten when the process exits). The agent-start
	// record says which kind it is (cel.AgentStartInfo.TPM), so a verifier
	// does not take a software TPM for hardware by accident.
	TPM string
	// StateDir keeps the event log of each boot and the AK blob. Required.
	// With the simulator they live in StateDir/sim, which New empties: a
	// simulator's PCRs and keys do not outlive the process that made them,
	// so nothing from an earlier one can be continued.
	StateDir string
	// PCR is the PCR the log extends; 0 means 14 (journal.DefaultPCR).
	// 16 and 23 are refused: software at locality 0 can reset them.
	PCR int
	// Trust lists the trusted signer certificates (files or directories,
	// DER or PEM): the userspace stand-in for the kernel keyring. Empty
	// trusts nobody, so every signed artifact measures as UNKNOWNKEY.
	Trust []string
	// AllowUnsigned also loads artifacts that are not tampered with but not
	// accepted either: unsigned, signed by an unknown key, or signed without
	// a data hash. They are measured and logged like any other. Default
	// false: only an OK verdict with an intact hash chain loads. A tampered
	// artifact (BADSIG, FAULT, UNEXPECTED, a broken hash link) is refused
	// whatever this says.
	AllowUnsigned bool
	// ObserverInterval is the period of the sweep that accounts for every
	// program in the kernel; 0 means 5s, negative disables the periodic
	// sweep (the sweep before every quote always runs). With the kernel's
	// program events the sweep is only a safety net.
	ObserverInterval time.Duration
	// Observer chooses how programs the agent did not load are found:
	// "" (default) the kernel's program events, falling back to sweeps
	// where perf events cannot be opened (no CAP_PERFMON, a paranoid
	// perf_event_paranoid); ObserveEvents requires the events (New fails
	// without them); ObserveSweep sweeps only. The agent-start record says
	// which ran.
	Observer string
	// EventRingPages is each CPU's ring for program events, in pages (a
	// power of two); 0 means progevents.DefaultRingPages.
	EventRingPages int
	// EventWindow is how long the observer lets a burst of program events
	// build up before it records them: programs that come and go within it
	// share one "transient programs" record. 0 means DefaultEventWindow;
	// negative records each batch as soon as it is read. A quote never
	// waits for it: the events written until then are handled first.
	EventWindow time.Duration
	// AKAlgorithm is "ecc" (default, NIST P-256) or "rsa" (RSA 2048).
	AKAlgorithm string
	// QuoteWindow is how long the first quote request of a batch waits for
	// others to share its TPM quote. 0: no waiting, but requests that
	// arrive while a quote is running still share the next one.
	QuoteWindow time.Duration
	// QuoteTPMShare bounds the share of the TPM's time that quotes take,
	// whoever asks and however often: after a TPM quote that held the TPM
	// for d, the next starts no sooner than d/QuoteTPMShare after it began.
	// Requests that arrive meanwhile wait and share that next quote
	// (coalescing), so a flood of requests costs no more TPM time than a
	// steady trickle, and the TPM stays free the rest of the time for the
	// log's extends, activations and whatever else on the host uses it.
	// 0 means DefaultQuoteTPMShare; 1 quotes back to back; outside 0..1 is
	// invalid.
	QuoteTPMShare float64
	// MaxQuoteBatch bounds how many requests share one TPM quote; 0 means
	// evidence.MaxBatch. 1 turns coalescing off: every request gets a quote
	// of its own, one after another.
	MaxQuoteBatch int
	// MaxQuoteLog bounds the log bytes one quote carries; 0 means
	// DefaultMaxQuoteLog. A quote asked from a record whose records take
	// more is refused with ErrLogTooLarge: the verifier reads them with
	// Walk (the Events stream) and quotes from a later record.
	MaxQuoteLog int64
	// RefusalLogRate bounds the log records of refused loads per requester
	// (uid): each may have RefusalLogRate refusals a second recorded one
	// by one (a measurement and a refusal each), after a burst of
	// RefusalLogBurst. Past it, refusals are measured and refused as
	// always and counted in a "refusals counted" record (measure.Refusals)
	// instead, so every one is still in the log. 0 means the defaults
	// (DefaultRefusalLogRate, DefaultRefusalLogBurst); a negative rate
	// records every refusal one by one.
	RefusalLogRate  float64
	RefusalLogBurst int
	// NoKernel runs the agent without bpf(), where the process may not use
	// it (no root, no CAP_BPF: an unprivileged demo). Loads are measured and
	// logged as always, then refused before any bpf() call with the reason
	// "kernel access unavailable: …"; the observer does not run, so the log
	// does not account for programs loaded by others. The agent-start record
	// (cel.AgentStartInfo.NoKernel) and Status say so. Default false; never
	// for a host whose log a verifier relies on.
	NoKernel bool
	// FirmwareLog is the machine's TCG PC Client firmware event log, read
	// once at start and served to verifiers that ask for it with a quote.
	// "" means DefaultFirmwareLog when TPM is a device (/dev/tpmrm0), and
	// none with the simulator or swtpm, whose PCRs the host's firmware did
	// not extend; NoFirmwareLog serves none. A log that is absent,
	// unreadable or larger than evidence.MaxFirmwareLogSize is not an
	// error: the agent serves none, and Status and the start log say why.
	FirmwareLog string
	// BootPCRs are the PCRs every quote covers besides the agent's, so a
	// verifier can replay the firmware log against them: nil means
	// DefaultBootPCRs (0 to 9); an empty, non-nil slice means none. The
	// agent's PCR, if listed, is quoted once.
	BootPCRs []int
	// SimulatorBoot, with the in-process simulator only, is called once
	// with the freshly manufactured simulator before anything else uses
	// it: demos and tests extend a replayed firmware log into its boot
	// PCRs here, as firmware would have. Validate refuses it with any
	// other TPM: the agent never extends a real TPM's boot PCRs.
	SimulatorBoot func(*tpm.Device) error
	// Logger receives operational logs; nil discards.
	Logger *slog.Logger

	// Test seams, set only through export_test.go.
	hook     func(bpfsys.Step) error        // called before each bpf() step of a load
	allowAll bool                           // bypass the load policy (kernel-behaviour tests)
	afterRun func(*measure.LoadResult)      // called after the kernel load, before the result record
	takeHook func(kind string, i int) error // called before taking each object the loader created
}

// Defaults applied by Validate's caller.
const (
	DefaultObserverInterval = 5 * time.Second
	DefaultEventWindow      = 100 * time.Millisecond
	DefaultRefusalLogRate   = 1.0
	DefaultRefusalLogBurst  = 10
	simTPM                  = "sim"
)

// Values of Config.Observer.
const (
	ObserveEvents = "events"
	ObserveSweep  = "sweep"
)

// settings is a validated Config with its defaults applied.
type settings struct {
	Config
	akAlg    tpm.AKAlgorithm
	bootPCRs []int // ascending, without the agent's PCR
	quoted   []int // the agent's PCR and bootPCRs, ascending
}

// DefaultBootPCRs returns the boot PCRs quoted by default: 0 to 7 (the
// firmware's, TCG PC Client PFP §3.3.4) and 8 and 9 (GRUB's command
// lines and files; the kernel's EFI stub's initrd).
func DefaultBootPCRs() []int { return []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9} }

// Validate reports whether c can be used, before anything is opened.
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

func (c Config) settings() (settings, error) {
	s := settings{Config: c}
	if s.PCR == 0 {
		s.PCR = journal.DefaultPCR
	}
	if s.ObserverInterval == 0 {
		s.ObserverInterval = DefaultObserverInterval
	}
	if s.EventWindow == 0 {
		s.EventWindow = DefaultEventWindow
	}
	if s.RefusalLogRate == 0 {
		s.RefusalLogRate = DefaultRefusalLogRate
	}
	if s.RefusalLogBurst <= 0 {
		s.RefusalLogBurst = DefaultRefusalLogBurst
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if s.StateDir == "" {
		errs = append(errs, errors.New("no state directory"))
	}
	if s.TPM == "" {
		errs = append(errs, errors.New(`no TPM named: a device such as /dev/tpmrm0, swtpm:unix:PATH, or "sim" for the in-process simulator (demos and tests only)`))
	}
	switch s.Observer {
	case "", ObserveEvents, ObserveSweep:
	default:
		errs = append(errs, fmt.Errorf("observer %q: want %q, %q or empty", s.Observer, ObserveEvents, ObserveSweep))
	}
	if p := s.EventRingPages; p < 0 || p&(p-1) != 0 || p > 1<<16 {
		errs = append(errs, fmt.Errorf("event ring of %d pages: want a power of two up to 65536", p))
	}
	if err := cel.CheckLogPCR(s.PCR); err != nil {
		errs = append(errs, err)
	}
	boot := s.BootPCRs
	if boot == nil {
		boot = DefaultBootPCRs()
	}
	for _, p := range slices.Compact(slices.Sorted(slices.Values(boot))) {
		if err := cel.CheckPCR(p); err != nil {
			errs = append(errs, fmt.Errorf("boot pcrs: %w", err))
		} else if p != s.PCR {
			s.bootPCRs = append(s.bootPCRs, p)
		}
	}
	s.quoted = slices.Sorted(slices.Values(append(slices.Clone(s.bootPCRs), s.PCR)))
	if s.SimulatorBoot != nil && s.TPM != simTPM {
		errs = append(errs, fmt.Errorf("a simulator boot hook with tpm %q: only the simulator's boot pcrs may be extended by the agent", s.TPM))
	}
	switch s.AKAlgorithm {
	case "", "ecc":
		s.AKAlgorithm, s.akAlg = "ecc", tpm.AKECCP256
	case "rsa":
		s.akAlg = tpm.AKRSA2048
	default:
		errs = append(errs, fmt.Errorf("ak algorithm %q: want ecc or rsa", s.AKAlgorithm))
	}
	if s.QuoteWindow < 0 {
		errs = append(errs, fmt.Errorf("negative quote window %v", s.QuoteWindow))
	}
	switch {
	case s.QuoteTPMShare == 0:
		s.QuoteTPMShare = DefaultQuoteTPMShare
	case !(s.QuoteTPMShare > 0 && s.QuoteTPMShare <= 1): // NaN too
		errs = append(errs, fmt.Errorf("quote tpm share %v outside (0, 1]", s.QuoteTPMShare))
	}
	switch {
	case s.MaxQuoteBatch == 0:
		s.MaxQuoteBatch = evidence.MaxBatch
	case s.MaxQuoteBatch < 0 || s.MaxQuoteBatch > evidence.MaxBatch:
		errs = append(errs, fmt.Errorf("max quote batch %d outside 1..%d", s.MaxQuoteBatch, evidence.MaxBatch))
	}
	switch {
	case s.MaxQuoteLog == 0:
		s.MaxQuoteLog = DefaultMaxQuoteLog
	case s.MaxQuoteLog < 0:
		errs = append(errs, fmt.Errorf("negative max quote log %d", s.MaxQuoteLog))
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("agent/config: %w: %w", ErrInvalid, err)
	}
	return s, nil
}

// LogValue keeps the logged configuration to what an operator needs; it
// holds no secrets, but the trust paths and state directory are named.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("tpm", c.TPM),
		slog.String("state_dir", c.StateDir),
		slog.Int("pcr", c.PCR),
		slog.Any("trust", c.Trust),
		slog.Bool("allow_unsigned", c.AllowUnsigned),
		slog.Duration("observer_interval", c.ObserverInterval),
		slog.String("ak_algorithm", c.AKAlgorithm),
		slog.Duration("quote_window", c.QuoteWindow),
		slog.Int("max_quote_batch", c.MaxQuoteBatch),
		slog.Float64("quote_tpm_share", c.QuoteTPMShare),
		slog.Float64("refusal_log_rate", c.RefusalLogRate),
		slog.Int("refusal_log_burst", c.RefusalLogBurst),
		slog.Bool("no_kernel", c.NoKernel),
		slog.String("observer", c.Observer),
		slog.String("firmware_log", c.FirmwareLog),
		slog.Any("boot_pcrs", c.BootPCRs),
	)
}
