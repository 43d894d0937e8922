// Package cmdrun is what the long-running commands (bpfattestd,
// bpfattest-verifierd) share around their own code: the signals that stop
// them, the order of parsing and serving, and the exit codes.
package cmdrun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// The exit codes.
const (
	ExitOK     = 0 // a clean shutdown, or -help
	ExitFailed = 1 // the service failed
	ExitUsage  = 2 // a usage or configuration error
)

// ErrUsage marks a usage or configuration error: an error that wraps it
// exits with ExitUsage.
var ErrUsage = errors.New("usage")

// Main runs run with the command's arguments and a context that SIGINT and
// SIGTERM cancel, and exits with the code it returns.
func Main(run func(ctx context.Context, args []string, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// Run parses args, then serves until ctx is done, and returns the exit
// code: an error of parse is a usage error; an error of serve is one if it
// wraps ErrUsage. Errors are written to stderr after name.
func Run[C any](ctx context.Context, name string, args []string, stderr io.Writer,
	parse func(args []string, stderr io.Writer) (C, error), serve func(ctx context.Context, cfg C, stderr io.Writer) error) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if errors.Is(err, ErrUsage) {
			return ExitUsage
		}
		return ExitFailed
	}
	return ExitOK
}
