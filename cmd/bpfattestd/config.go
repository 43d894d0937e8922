package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/internal/cmdrun"
)

// config is the daemon's configuration. The config file (--config) is JSON
// with these field names; flags given on the command line override it,
// list flags replacing the file's list.
//
//	{
//	  "tpm": "/dev/tpmrm0",
//	  "state_dir": "/var/lib/bpfattest",
//	  "listen": "0.0.0.0:7433",
//	  "local_socket": "/run/bpfattest/bpfattestd.sock",
//	  "local_group": "bpfattest",
//	  "trust": ["/etc/bpfattest/trust"],
//	  "tls_cert": "/etc/bpfattest/tls/server.pem",
//	  "tls_key": "/etc/bpfattest/tls/server.key",
//	  "client_ca": "/etc/bpfattest/tls/verifiers-ca.pem",
//	  "client_allow": [],
//	  "metrics": "127.0.0.1:9433",
//	  "metrics_tls_cert": "", "metrics_tls_key": "", "metrics_client_ca": "",
//	  "health": "",
//	  "pcr": 14,
//	  "quote_tpm_share": 0.5,
//	  "max_remote_conns": 256,
//	  "max_conns_per_host": 16,
//	  "max_quote_log": 16777216,
//	  "stall_timeout": "15s",
//	  "identity_rate": 10,
//	  "load_rate": 10,
//	  "firmware_log": "/sys/kernel/security/tpm0/binary_bios_measurements",
//	  "boot_pcrs": "0-9"
//	}
type config struct {
	TPM               string   `json:"tpm"`
	StateDir          string   `json:"state_dir"`
	Listen            string   `json:"listen"`
	LocalSocket       string   `json:"local_socket"`
	LocalGroup        string   `json:"local_group"`
	Trust             []string `json:"trust"`
	TLSCert           string   `json:"tls_cert"`
	TLSKey            string   `json:"tls_key"`
	ClientCA          string   `json:"client_ca"`
	ClientAllow       []string `json:"client_allow"`
	InsecureLoopback  bool     `json:"insecure_loopback"`
	Metrics           string   `json:"metrics"`
	MetricsTLSCert    string   `json:"metrics_tls_cert"`
	MetricsTLSKey     string   `json:"metrics_tls_key"`
	MetricsClientCA   string   `json:"metrics_client_ca"`
	Health            string   `json:"health"`
	PCR               int      `json:"pcr"`
	AllowUnsigned     bool     `json:"allow_unsigned"`
	AKAlgorithm       string   `json:"ak_algorithm"`
	ObserverInterval  duration `json:"observer_interval"`
	Observer          string   `json:"observer"`
	EventRingPages    int      `json:"event_ring_pages"`
	EventWindow       duration `json:"event_window"`
	QuoteWindow       duration `json:"quote_window"`
	QuoteTPMShare     float64  `json:"quote_tpm_share"`
	TLSReloadInterval duration `json:"tls_reload_interval"`
	MaxQuoteLog       int64    `json:"max_quote_log"`
	// QuoteRate and QuoteBurst are read and ignored (with a warning):
	// quotes are bounded by QuoteTPMShare, not per client.
	QuoteRate       float64 `json:"quote_rate"`
	QuoteBurst      int     `json:"quote_burst"`
	MaxRemoteConns  int     `json:"max_remote_conns"`
	MaxConnsPerHost int     `json:"max_conns_per_host"`
	MaxArtifactSize int     `json:"max_artifact_size"`
	// Budgets of the services (service.Options); 0 means the default.
	HandshakeTimeout      duration `json:"handshake_timeout"`
	RemoteIdleTimeout     duration `json:"remote_idle_timeout"`
	StallTimeout          duration `json:"stall_timeout"`
	RefusalDelay          duration `json:"refusal_delay"`
	MaxRemoteCalls        int      `json:"max_remote_calls"`
	MaxRemoteCallsPerPeer int      `json:"max_remote_calls_per_peer"`
	MaxQuoteCalls         int      `json:"max_quote_calls"`
	MaxQuoteCallsPerPeer  int      `json:"max_quote_calls_per_peer"`
	MaxEventsStreams      int      `json:"max_events_streams"`
	MaxEventsPerPeer      int      `json:"max_events_per_peer"`
	MaxQuoteBytes         int64    `json:"max_quote_bytes"`
	MaxQuoteBytesPerPeer  int64    `json:"max_quote_bytes_per_peer"`
	IdentityRate          float64  `json:"identity_rate"`
	IdentityBurst         int      `json:"identity_burst"`
	ActivateRate          float64  `json:"activate_rate"`
	ActivateBurst         int      `json:"activate_burst"`
	EnrolRate             float64  `json:"enrol_rate"`
	EnrolBurst            int      `json:"enrol_burst"`
	EventsRate            float64  `json:"events_rate"`
	EventsBurst           int      `json:"events_burst"`
	EventsRateTotal       float64  `json:"events_rate_total"`
	EventsBurstTotal      int      `json:"events_burst_total"`
	MaxLocalCalls         int      `json:"max_local_calls"`
	MaxLocalCallsPerPeer  int      `json:"max_local_calls_per_peer"`
	MaxLocalConns         int      `json:"max_local_conns"`
	MaxLocalConnsPerPeer  int      `json:"max_local_conns_per_peer"`
	MaxLoadBytes          int64    `json:"max_load_bytes"`
	MaxLoadBytesPerPeer   int64    `json:"max_load_bytes_per_peer"`
	LoadRate              float64  `json:"load_rate"`
	LoadBurst             int      `json:"load_burst"`
	LoadRateTotal         float64  `json:"load_rate_total"`
	LoadBurstTotal        int      `json:"load_burst_total"`
	LoadReceiveTimeout    duration `json:"load_receive_timeout"`
	RefusalLogRate        float64  `json:"refusal_log_rate"`
	RefusalLogBurst       int      `json:"refusal_log_burst"`
	MemoryLimit           int64    `json:"memory_limit"`
	LogLevel              string   `json:"log_level"`
	LogFormat             string   `json:"log_format"`
	FirmwareLog           string   `json:"firmware_log"`
	BootPCRs              string   `json:"boot_pcrs"`
}

// Defaults.
const (
	defaultSocket = "/run/bpfattest/bpfattestd.sock"
	defaultState  = "/var/lib/bpfattest"
)

func defaults() config {
	return config{
		StateDir:    defaultState,
		LocalSocket: defaultSocket,
		PCR:         14,
		LogLevel:    "info",
		LogFormat:   "text",
	}
}

// errUsage marks configuration errors (exit code 2).
var errUsage = cmdrun.ErrUsage

// parseConfig reads the config file named by --config, if any, then
// applies the command line over it.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	cfg := defaults()
	// First pass: find --config only.
	pre := flag.NewFlagSet("bpfattestd", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	var file string
	pre.StringVar(&file, "config", "", "")
	registerFlags(pre, &config{})
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs := flag.NewFlagSet("bpfattestd", flag.ContinueOnError)
			fs.SetOutput(stderr)
			fs.String("config", "", "JSON config file; flags override it")
			registerFlags(fs, &cfg)
			fs.Usage()
			return cfg, flag.ErrHelp
		}
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	if file != "" {
		if err := loadConfigFile(file, &cfg); err != nil {
			return cfg, fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	fs := flag.NewFlagSet("bpfattestd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "JSON config file; flags override it")
	registerFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return cfg, nil
}

func registerFlags(fs *flag.FlagSet, c *config) {
	fs.StringVar(&c.TPM, "tpm", c.TPM, "TPM (required): /dev/tpmrm0 | swtpm:unix:PATH | sim (the in-process simulator: demos and tests only; the agent's identity says so)")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory of the event log and the AK blob")
	fs.StringVar(&c.Listen, "listen", c.Listen, "remote API address (host:port); empty: no remote API")
	fs.StringVar(&c.LocalSocket, "local-socket", c.LocalSocket, "local API unix socket")
	fs.StringVar(&c.LocalGroup, "local-group", c.LocalGroup, "group (name or gid) allowed on the local socket besides root")
	fs.Var(newListFlag(&c.Trust), "trust", "trusted signer certificate file or directory (repeatable)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "remote API server certificate (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "remote API server key (PEM)")
	fs.StringVar(&c.ClientCA, "client-ca", c.ClientCA, "require client certificates issued by this CA (PEM)")
	fs.Var(newListFlag(&c.ClientAllow), "client-allow", "require client certificates with this SHA-256 fingerprint (repeatable)")
	fs.BoolVar(&c.InsecureLoopback, "insecure-loopback", c.InsecureLoopback, "serve the remote API without TLS (loopback addresses only; demos)")
	fs.StringVar(&c.Metrics, "metrics", c.Metrics, "Prometheus metrics address (host:port), also serving /healthz and /readyz; empty: none")
	fs.StringVar(&c.MetricsTLSCert, "metrics-tls-cert", c.MetricsTLSCert, "serve metrics over TLS with this certificate (PEM)")
	fs.StringVar(&c.MetricsTLSKey, "metrics-tls-key", c.MetricsTLSKey, "the metrics certificate's key (PEM)")
	fs.StringVar(&c.MetricsClientCA, "metrics-client-ca", c.MetricsClientCA, "require scrapers' client certificates issued by this CA (PEM)")
	fs.StringVar(&c.Health, "health", c.Health, "address (host:port) of plain-HTTP /healthz and /readyz for probes that cannot present a client certificate; empty: none")
	fs.IntVar(&c.PCR, "pcr", c.PCR, "PCR to extend (never 16 or 23)")
	fs.BoolVar(&c.AllowUnsigned, "allow-unsigned", c.AllowUnsigned, "measure and load unsigned or untrusted (but untampered) artifacts")
	fs.StringVar(&c.AKAlgorithm, "ak-algorithm", c.AKAlgorithm, "attestation key: ecc | rsa")
	fs.Var(&c.ObserverInterval, "observer-interval", "period of the kernel program sweep (0: default 5s; negative: off)")
	fs.StringVar(&c.Observer, "observer", c.Observer, "how programs others load are found: events (the kernel's program events, required), sweep (periodic sweeps only); empty: events, or sweeps where perf events cannot be opened")
	fs.IntVar(&c.EventRingPages, "event-ring-pages", c.EventRingPages, "each CPU's ring for program events, in pages (a power of two; 0: 64)")
	fs.Var(&c.EventWindow, "event-window", "how long a burst of program events builds up before it is recorded (0: 100ms; negative: record each read at once)")
	fs.Var(&c.QuoteWindow, "quote-window", "how long a quote waits for others to share it")
	fs.Var(&c.TLSReloadInterval, "tls-reload-interval", "how often the TLS files are checked for a change and reloaded (0: default 10s; negative: only on SIGHUP)")
	fs.Int64Var(&c.MaxQuoteLog, "max-quote-log", c.MaxQuoteLog, "log bytes one quote carries at most; verifiers read older records with Events (0: default 16 MiB)")
	fs.Float64Var(&c.QuoteTPMShare, "quote-tpm-share", c.QuoteTPMShare, "the share of the TPM's time quotes may take, all clients together; requests past it wait and share the next quote (0: default 0.5; 1: back to back)")
	fs.Float64Var(&c.QuoteRate, "quote-rate", c.QuoteRate, "ignored (quotes are bounded by --quote-tpm-share, not per client)")
	fs.IntVar(&c.QuoteBurst, "quote-burst", c.QuoteBurst, "ignored (quotes are bounded by --quote-tpm-share, not per client)")
	fs.IntVar(&c.MaxRemoteConns, "max-remote-conns", c.MaxRemoteConns, "open remote connections at most (0: default 256)")
	fs.IntVar(&c.MaxConnsPerHost, "max-conns-per-host", c.MaxConnsPerHost, "open remote connections from one address at most (0: default 16)")
	fs.IntVar(&c.MaxArtifactSize, "max-artifact-size", c.MaxArtifactSize, "largest artifact a Load accepts, in bytes (0: the agent's limit, 96 MiB)")
	registerBudgetFlags(fs, c)
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug | info | warn | error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text | json")
	fs.StringVar(&c.FirmwareLog, "firmware-log", c.FirmwareLog, "the firmware's TPM event log served to verifiers (default with /dev/tpm*: "+agent.DefaultFirmwareLog+"; none with sim or swtpm); none: serve none")
	fs.StringVar(&c.BootPCRs, "boot-pcrs", c.BootPCRs, "boot PCRs quoted with the agent's PCR: a list such as 0-7,9 (default 0-9), or none")
}

// registerBudgetFlags adds the flags of the services' budgets: what one
// peer, and all peers together, may hold or ask of the agent (see
// docs/threat-model.md, "Budgets").
func registerBudgetFlags(fs *flag.FlagSet, c *config) {
	fs.Var(&c.HandshakeTimeout, "handshake-timeout", "a remote connection's TLS handshake and HTTP/2 preface at most (0: default 3s)")
	fs.Var(&c.RemoteIdleTimeout, "remote-idle-timeout", "close a remote connection without a call for this long (0: default 5m)")
	fs.Var(&c.StallTimeout, "stall-timeout", "cut a remote connection whose peer takes nothing the agent sends for this long (0: default 15s)")
	fs.Var(&c.RefusalDelay, "refusal-delay", "answer a call turned away by a budget after this long, reading nothing more from its connection meanwhile (0: default 100ms; negative: at once)")
	fs.IntVar(&c.MaxRemoteCalls, "max-remote-calls", c.MaxRemoteCalls, "remote calls other than quotes in flight, all clients (0: default 512)")
	fs.IntVar(&c.MaxRemoteCallsPerPeer, "max-remote-calls-per-peer", c.MaxRemoteCallsPerPeer, "remote calls other than quotes in flight, one client (0: default 32)")
	fs.IntVar(&c.MaxQuoteCalls, "max-quote-calls", c.MaxQuoteCalls, "Quote calls in flight, all clients (0: default 2048)")
	fs.IntVar(&c.MaxQuoteCallsPerPeer, "max-quote-calls-per-peer", c.MaxQuoteCallsPerPeer, "Quote calls in flight, one client: a verifier host's verifiers behind one certificate or address together (0: default 1024)")
	fs.IntVar(&c.MaxEventsStreams, "max-events-streams", c.MaxEventsStreams, "Events streams open, all clients (0: default 64)")
	fs.IntVar(&c.MaxEventsPerPeer, "max-events-per-peer", c.MaxEventsPerPeer, "Events streams open, one client (0: default 4)")
	fs.Int64Var(&c.MaxQuoteBytes, "max-quote-bytes", c.MaxQuoteBytes, "log bytes of the quotes being answered, all clients (0: default 64 MiB)")
	fs.Int64Var(&c.MaxQuoteBytesPerPeer, "max-quote-bytes-per-peer", c.MaxQuoteBytesPerPeer, "log bytes of the quotes being answered, one client (0: --max-quote-log)")
	fs.Float64Var(&c.IdentityRate, "identity-rate", c.IdentityRate, "Identity calls per second per remote client (0: default 10; negative: no limit)")
	fs.IntVar(&c.IdentityBurst, "identity-burst", c.IdentityBurst, "Identity burst per remote client (0: default 20)")
	fs.Float64Var(&c.ActivateRate, "activate-rate", c.ActivateRate, "credential activations per second per remote client (0: default 2; negative: no limit)")
	fs.IntVar(&c.ActivateBurst, "activate-burst", c.ActivateBurst, "credential activation burst per remote client (0: default 10)")
	fs.Float64Var(&c.EnrolRate, "enrol-rate", c.EnrolRate, "credential activations per second, all remote clients (0: default 2; negative: no limit)")
	fs.IntVar(&c.EnrolBurst, "enrol-burst", c.EnrolBurst, "credential activation burst, all remote clients (0: default 10)")
	fs.Float64Var(&c.EventsRate, "events-rate", c.EventsRate, "Events record bytes per second per remote client; a stream past it waits (0: default 2 MiB; negative: no limit)")
	fs.IntVar(&c.EventsBurst, "events-burst", c.EventsBurst, "Events burst per remote client, in bytes (0: default 256 KiB)")
	fs.Float64Var(&c.EventsRateTotal, "events-rate-total", c.EventsRateTotal, "Events record bytes per second, all remote clients (0: default 4 MiB; negative: no limit)")
	fs.IntVar(&c.EventsBurstTotal, "events-burst-total", c.EventsBurstTotal, "Events burst, all remote clients, in bytes (0: default 1 MiB)")
	fs.IntVar(&c.MaxLocalCalls, "max-local-calls", c.MaxLocalCalls, "local calls in flight, all requesters (0: default 64)")
	fs.IntVar(&c.MaxLocalCallsPerPeer, "max-local-calls-per-peer", c.MaxLocalCallsPerPeer, "local calls in flight, one uid (0: default 8)")
	fs.IntVar(&c.MaxLocalConns, "max-local-conns", c.MaxLocalConns, "local socket connections, all uids (0: default 128; root: its own share only)")
	fs.IntVar(&c.MaxLocalConnsPerPeer, "max-local-conns-per-peer", c.MaxLocalConnsPerPeer, "local socket connections, one uid (0: default 16)")
	fs.Int64Var(&c.MaxLoadBytes, "max-load-bytes", c.MaxLoadBytes, "bytes of load requests held, all requesters (0: three of the largest request)")
	fs.Int64Var(&c.MaxLoadBytesPerPeer, "max-load-bytes-per-peer", c.MaxLoadBytesPerPeer, "bytes of load requests held, one uid (0: two of the largest request)")
	fs.Float64Var(&c.LoadRate, "load-rate", c.LoadRate, "loads per second per uid (0: default 10; negative: no limit)")
	fs.IntVar(&c.LoadBurst, "load-burst", c.LoadBurst, "load burst per uid (0: default 20)")
	fs.Float64Var(&c.LoadRateTotal, "load-rate-total", c.LoadRateTotal, "loads per second, all requesters (0: default 50; negative: no limit)")
	fs.IntVar(&c.LoadBurstTotal, "load-burst-total", c.LoadBurstTotal, "load burst, all requesters (0: default 100)")
	fs.Var(&c.LoadReceiveTimeout, "load-receive-timeout", "cut a load request not received in full this long after it began (0: default 10s)")
	fs.Float64Var(&c.RefusalLogRate, "refusal-log-rate", c.RefusalLogRate, "refused loads per second per uid recorded one by one; past it they are counted in a summary record (0: default 1; negative: every refusal one by one)")
	fs.Int64Var(&c.MemoryLimit, "memory-limit", c.MemoryLimit, "the Go runtime's soft memory limit in bytes: the collector works harder near it (0: GOMEMLIMIT if set, else 96 MiB; negative: none)")
	fs.IntVar(&c.RefusalLogBurst, "refusal-log-burst", c.RefusalLogBurst, "refused loads per uid recorded one by one in a burst (0: default 10)")
}

// parsePCRList reads --boot-pcrs: "" is nil (the default), "none" an empty
// list, otherwise comma-separated PCR indices and ranges ("0-7,9"), each
// 0..23.
func parsePCRList(s string) ([]int, error) {
	switch s {
	case "":
		return nil, nil
	case "none":
		return []int{}, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := pcrIndex(lo)
		if err != nil {
			return nil, fmt.Errorf("boot pcrs %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = pcrIndex(hi); err != nil {
				return nil, fmt.Errorf("boot pcrs %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("boot pcrs %q: range %s descends", s, part)
			}
		}
		for p := a; p <= b; p++ {
			if slices.Contains(out, p) {
				return nil, fmt.Errorf("boot pcrs %q: pcr %d twice", s, p)
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}

// pcrIndex reads one decimal PCR index, 0..23.
func pcrIndex(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 23 || s != strconv.Itoa(n) {
		return 0, fmt.Errorf("%q is not a pcr index 0..23", s)
	}
	return n, nil
}

// maxConfigSize bounds the config file: it names a few paths and numbers.
const maxConfigSize = 1 << 20

func loadConfigFile(path string, c *config) error {
	b, err := boundedfile.ReadFile(path, maxConfigSize)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if dec.More() {
		return fmt.Errorf("config file %s: trailing data", path)
	}
	return nil
}

// check validates what the agent's own Config.Validate does not see.
func (c *config) check() error {
	var errs []error
	if c.LocalSocket == "" {
		errs = append(errs, errors.New("--local-socket is required"))
	}
	if c.Listen != "" {
		tls := c.TLSCert != "" || c.TLSKey != ""
		switch {
		case tls && c.InsecureLoopback:
			errs = append(errs, errors.New("--insecure-loopback and --tls-cert/--tls-key exclude each other"))
		case !tls && !c.InsecureLoopback:
			errs = append(errs, errors.New("--listen needs --tls-cert and --tls-key (or --insecure-loopback on a loopback address)"))
		case tls && (c.TLSCert == "" || c.TLSKey == ""):
			errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
		}
		if !tls && (c.ClientCA != "" || len(c.ClientAllow) > 0) {
			errs = append(errs, errors.New("--client-ca/--client-allow need TLS"))
		}
	}
	if (c.MetricsTLSCert == "") != (c.MetricsTLSKey == "") {
		errs = append(errs, errors.New("--metrics-tls-cert and --metrics-tls-key go together"))
	}
	if c.MetricsClientCA != "" && c.MetricsTLSCert == "" {
		errs = append(errs, errors.New("--metrics-client-ca needs --metrics-tls-cert and --metrics-tls-key"))
	}
	if c.MetricsTLSCert != "" && c.Metrics == "" {
		errs = append(errs, errors.New("--metrics-tls-cert needs --metrics"))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// groupID resolves --local-group to a gid; "" is -1 (root only).
func groupID(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("local group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}

// listFlag is a repeatable string flag whose first use on the command line
// replaces the list it was given (from the config file).
type listFlag struct {
	list *[]string
	set  bool
}

func newListFlag(list *[]string) *listFlag { return &listFlag{list: list} }

func (l *listFlag) String() string {
	if l == nil || l.list == nil {
		return ""
	}
	return strings.Join(*l.list, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.list, l.set = nil, true
	}
	*l.list = append(*l.list, v)
	return nil
}

// duration is a time.Duration that reads "5s" from flags and JSON.
type duration time.Duration

func (d *duration) String() string { return time.Duration(*d).String() }

func (d *duration) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	*d = duration(x)
	return nil
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"5s\": %w", err)
	}
	return d.Set(s)
}
