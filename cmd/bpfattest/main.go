// Command bpfattest is the command-line front end of bpfattest: it inspects
// and signs light-skeleton artifacts, packs bpftool headers into bundles,
// reads and compares event logs for audit review, and verifies agents:
// enroll, verify, scan and policy init (docs/cli.md), and writes and checks
// the verdicts as signed EAT Attestation Results (docs/ear.md).
//
// Exit codes: 0 success (for inspect: signed, trusted, hash chain intact);
// 1 the check ran and failed; 2 usage error or unreadable input. The
// verifier commands verify and scan: 0 compliant, 1 non-compliant, 2 could
// not verify.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"inspect": {"measure an artifact and print its verdicts", runInspect},
		"sign":    {"sign an artifact's loader and write a bundle", runSign},
		"pack":    {"turn a bpftool .lskel.h header into a bundle", runPack},
		"log":     {"print or check an event log", runLog},
		"demo":    {"the whole story on the in-process TPM simulator", runDemo},
		"load":    {"load an artifact through the local agent", runLoad},
		"quote":   {"get a quote and the log from an agent", runQuote},
		"verify":  {"verify an agent's quote and log against a policy", runVerify},
		"policy":  {"policy init: write a policy from a known-good host", runPolicy},
		"scan":    {"verify every host of an inventory against a policy", runScan},
		"enroll":  {"tie an agent's AK to its TPM's EK certificate and pin it", runEnroll},
		"ear":     {"ear verify: check signed attestation results (EAR tokens)", runEAR},
		"fleet":   {"the fleet service's API: summary, agents, history, register, policies", runFleet},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "bpfattest: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return exitUsage
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: bpfattest COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'bpfattest COMMAND -h' for a command's flags")
}

// usageError returns the usage-error reporter of command cmd: it prints
// "bpfattest CMD: message" to w and returns exitUsage.
func usageError(w io.Writer, cmd string) func(format string, args ...any) int {
	return func(format string, args ...any) int {
		fmt.Fprintf(w, "bpfattest "+cmd+": "+format+"\n", args...)
		return exitUsage
	}
}

// newFlagSet returns the flag set of a subcommand, reporting to stderr; its
// usage prints the usage lines, then the flags.
func newFlagSet(name string, stderr io.Writer, usage ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		for _, l := range usage {
			fmt.Fprintln(stderr, l)
		}
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a subcommand's flags, allowing them after its
// positional arguments. It returns ok false with the exit code when the
// command must stop: exitOK after -h, exitUsage on a bad flag (the flag
// package has already said which).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}
