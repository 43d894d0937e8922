package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// config is the service's command line.
type config struct {
	stateDir, db                         string
	listen, tlsCert, tlsKey, clientCA    string
	adminOU, readerOU                    string
	adminCerts, readerCerts              listFlag
	insecureLoopback                     bool
	loopbackRole                         string
	pushListen, pushCA                   string
	metrics, dashboardListen             string
	interval, timeout, lease, maxBackoff time.Duration
	pushGrace                            time.Duration
	jitter                               float64
	concurrency                          int
	tofu                                 bool
	policy, inventory, inventoryStateDir string
	agentCA, agentCert, agentKey         string
	agentInsecureLoopback                bool
	webhooks                             listFlag
	webhookSecretFile                    string
	replica                              string
	roundRetention, transitionRetention  time.Duration
	logLevel, logFormat                  string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("bpfattest-verifierd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.stateDir, "state-dir", "/var/lib/bpfattest-verifierd", "directory of the embedded SQLite store (fleet.db)")
	fs.StringVar(&c.db, "db", "", "PostgreSQL instead of SQLite: postgres://… URL or keyword/value connection string")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:7800", "API, JSON API and dashboard address (host:port)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "API server certificate (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "API server key (PEM)")
	fs.StringVar(&c.clientCA, "client-ca", "", "CA (PEM) whose client certificates get the role their OU names")
	fs.StringVar(&c.adminOU, "admin-ou", "bpfattest-admin", "client certificate OU of the admin role")
	fs.StringVar(&c.readerOU, "reader-ou", "bpfattest-reader", "client certificate OU of the reader role")
	fs.Var(&c.adminCerts, "admin-cert", "SHA-256 of a client certificate with the admin role (repeatable)")
	fs.Var(&c.readerCerts, "reader-cert", "SHA-256 of a client certificate with the reader role (repeatable)")
	fs.BoolVar(&c.insecureLoopback, "insecure-loopback", false, "serve the API without TLS (loopback --listen only; demos)")
	fs.StringVar(&c.loopbackRole, "loopback-role", "reader", "role of API clients without TLS under --insecure-loopback: none, reader or admin")
	fs.StringVar(&c.pushListen, "push-listen", "", "push service address (host:port): agents dial in with client certificates; empty: no push")
	fs.StringVar(&c.pushCA, "push-client-ca", "", "require push agents' certificates to chain to this CA (PEM) besides their registered SHA-256")
	fs.StringVar(&c.dashboardListen, "dashboard-listen", "", "also serve the dashboard (read-only) without TLS on this loopback address, e.g. behind an authenticating proxy")
	fs.StringVar(&c.metrics, "metrics", "", "Prometheus metrics address (host:port); empty: none")
	fs.DurationVar(&c.interval, "interval", time.Minute, "how often each agent is verified")
	fs.Float64Var(&c.jitter, "jitter", 0.1, "due times spread by ± this fraction of the interval")
	fs.DurationVar(&c.timeout, "timeout", 0, "time allowed for one verification (0: 30s, at most the interval)")
	fs.DurationVar(&c.lease, "lease", 0, "how long a claimed agent stays leased to this node (0: timeout + 5s)")
	fs.DurationVar(&c.maxBackoff, "max-backoff", 10*time.Minute, "longest delay before an unreachable agent is tried again")
	fs.DurationVar(&c.pushGrace, "push-grace", 0, "a push agent this late is unreachable (0: one interval)")
	fs.IntVar(&c.concurrency, "concurrency", 64, "agents verified at once by this node")
	fs.BoolVar(&c.tofu, "tofu", false, "pin the AK an agent registered without one presents at first contact")
	fs.StringVar(&c.policy, "policy", "", "policy YAML stored as the \"default\" policy at start (a new version when it changed)")
	fs.StringVar(&c.inventory, "inventory", "", "register (or update) these hosts at start: bpfattest scan's inventory format")
	fs.StringVar(&c.inventoryStateDir, "inventory-state-dir", "", "bpfattest scan state files (NAME.json) to import for inventory hosts")
	fs.StringVar(&c.agentCA, "agent-ca", "", "CA (PEM) of the agents' server certificates; default: system roots")
	fs.StringVar(&c.agentCert, "agent-cert", "", "client certificate (PEM) for agents that require mutual TLS")
	fs.StringVar(&c.agentKey, "agent-key", "", "client key (PEM) for agents that require mutual TLS")
	fs.BoolVar(&c.agentInsecureLoopback, "agent-insecure-loopback", false, "dial loopback agents registered without server_name or cert_sha256 without TLS (demos and tests)")
	fs.Var(&c.webhooks, "webhook", "URL told of compliance transitions (repeatable)")
	fs.StringVar(&c.webhookSecretFile, "webhook-secret-file", "", "file holding the webhooks' HMAC-SHA256 key (at least 16 bytes)")
	fs.StringVar(&c.replica, "replica", "", "this node's name in leases and history (default: random)")
	fs.DurationVar(&c.roundRetention, "round-retention", time.Hour, "how long history rows that changed nothing are kept")
	fs.DurationVar(&c.transitionRetention, "history-retention", 90*24*time.Hour, "how long transitions are kept")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug | info | warn | error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text | json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.check()
}

func (c *config) check() error {
	var errs []error
	tls := c.tlsCert != "" || c.tlsKey != ""
	switch {
	case c.listen == "":
		errs = append(errs, errors.New("--listen is required"))
	case tls && c.insecureLoopback:
		errs = append(errs, errors.New("--insecure-loopback excludes --tls-cert/--tls-key"))
	case !tls && !c.insecureLoopback:
		errs = append(errs, errors.New("the API needs --tls-cert and --tls-key (or --insecure-loopback on a loopback --listen)"))
	case tls && (c.tlsCert == "" || c.tlsKey == ""):
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	case c.insecureLoopback:
		if err := checkLoopback(c.listen); err != nil {
			errs = append(errs, fmt.Errorf("--insecure-loopback: %w", err))
		}
	}
	if tls && c.clientCA == "" && len(c.adminCerts)+len(c.readerCerts) == 0 {
		errs = append(errs, errors.New("mutual TLS needs --client-ca or --admin-cert/--reader-cert"))
	}
	if c.dashboardListen != "" {
		if err := checkLoopback(c.dashboardListen); err != nil {
			errs = append(errs, fmt.Errorf("--dashboard-listen: %w", err))
		}
	}
	if c.pushListen != "" && !tls {
		errs = append(errs, errors.New("--push-listen needs --tls-cert and --tls-key (push agents authenticate with client certificates)"))
	}
	if (c.agentCert == "") != (c.agentKey == "") {
		errs = append(errs, errors.New("--agent-cert and --agent-key go together"))
	}
	if len(c.webhooks) > 0 && c.webhookSecretFile == "" {
		errs = append(errs, errors.New("--webhook needs --webhook-secret-file"))
	}
	if c.interval < time.Second {
		errs = append(errs, fmt.Errorf("--interval %v: at least 1s", c.interval))
	}
	switch c.logFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.logFormat))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// checkLoopback refuses an address that is not a loopback IP or
// "localhost".
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address", addr)
}
