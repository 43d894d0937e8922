// Command bpfattestd is the bpfattest agent: it measures signed BPF light
// skeletons before the kernel runs them, extends a TPM PCR, keeps the event
// log that replays to it, and serves loads on a local unix socket and
// identity, quotes and the log to remote verifiers over TLS 1.3.
//
// Usage:
//
//	bpfattestd --tpm sim|swtpm:unix:PATH|/dev/tpmrm0 --state-dir D
//	    [--listen ADDR --tls-cert C --tls-key K [--client-ca F | --client-allow SHA256...]]
//	    [--listen 127.0.0.1:PORT --insecure-loopback]
//	    [--local-socket PATH] [--local-group G] [--trust DIR|FILE]...
//	    [--metrics ADDR [--metrics-tls-cert C --metrics-tls-key K [--metrics-client-ca F]]]
//	    [--health ADDR] [--tls-reload-interval D]
//	    [--pcr N] [--allow-unsigned] [--config FILE]
//
// The config file is JSON (see the config type); flags override it. SIGTERM
// and SIGINT shut the daemon down gracefully; SIGHUP reloads the TLS files
// (which are also reloaded when they change).
//
// Under systemd (deploy/systemd) it speaks sd_notify when $NOTIFY_SOCKET is
// set: READY=1 once the TPM is open, the log reconciled and every listener
// serves, WATCHDOG=1 while the agent is alive when $WATCHDOG_USEC is set,
// STOPPING=1 on shutdown; and it takes its local socket from socket
// activation ($LISTEN_FDS, the descriptor named "local") when passed one.
//
// Exit codes: 0 after a clean shutdown; 1 the agent failed (TPM, log,
// listener); 2 usage or configuration error.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/bpfattest/bpfattest/internal/cmdrun"
)

const (
	exitOK     = cmdrun.ExitOK
	exitFailed = cmdrun.ExitFailed
	exitUsage  = cmdrun.ExitUsage
)

func main() { cmdrun.Main(run) }

// run parses the configuration, serves until ctx is done, and returns the
// exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	return cmdrun.Run(ctx, "bpfattestd", args, stderr, checkedConfig, serve)
}

// checkedConfig parses the configuration and checks it as a whole.
func checkedConfig(args []string, stderr io.Writer) (config, error) {
	cfg, err := parseConfig(args, stderr)
	if err == nil {
		if err = cfg.check(); err != nil {
			err = fmt.Errorf("%w: %w", errUsage, err)
		}
	}
	return cfg, err
}
