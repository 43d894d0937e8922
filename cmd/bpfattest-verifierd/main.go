// Command bpfattest-verifierd is the fleet attestation service: it keeps
// every registered bpfattest agent verified on a schedule, judges the
// evidence push agents upload, remembers verdicts and their history,
// sends webhooks on compliance transitions, and serves an API (gRPC and
// JSON over HTTP, mutual TLS with reader and admin roles), a dashboard and
// Prometheus metrics.
//
// The one-command start, on the embedded SQLite store, verifying loopback
// agents listed in an inventory (the format of bpfattest scan):
//
//	bpfattest-verifierd --state-dir /tmp/fleet --inventory hosts.txt --policy policy.yaml \
//	    --tofu --agent-insecure-loopback --listen 127.0.0.1:7800 --insecure-loopback
//
// PostgreSQL instead of SQLite, for replicas sharing one database:
// --db postgres://USER@HOST/DB (or a keyword/value string such as
// "host=/run/postgresql dbname=fleet"). docs/fleet.md has every flag.
//
// Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT); 1 the service
// failed; 2 usage or configuration error.
package main

import (
	"context"
	"io"

	"github.com/bpfattest/bpfattest/internal/cmdrun"
)

// errUsage marks configuration errors (exit code 2).
var errUsage = cmdrun.ErrUsage

func main() { cmdrun.Main(run) }

func run(ctx context.Context, args []string, stderr io.Writer) int {
	return cmdrun.Run(ctx, "bpfattest-verifierd", args, stderr, parseFlags, serve)
}
