package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// Exit codes of the verifier commands (verify, scan): the verdict.
const (
	exitCompliant    = 0
	exitNonCompliant = 1
	exitUnverified   = 2 // could not verify: unreachable, bad evidence, usage
)

// runVerify implements `bpfattest verify --agent ADDR --policy P
// [--state FILE] [--ak FILE | --tofu] [--json]`: it asks the agent for a
// quote over a fresh nonce and the log from the State's next record,
// verifies both against the pinned AK, evaluates the policy, stores the new
// State and prints the verdict. Exit 0 compliant, 1 non-compliant, 2 could
// not verify (or usage).
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("verify", stderr,
		"usage: bpfattest verify --agent ADDR --policy P [--state FILE] [--ak FILE | --tofu] [--json | --format text|json|ear]",
		"                        [--ear-key KEY [--ear-alg ALG] [--ear-validity D]] [TLS flags]",
		"       bpfattest verify --evidence FILE --nonce HEX --policy P (--state FILE | --ak FILE) [--json | --format text|json|ear]",
		"\nVerifies an agent's quote and log and evaluates a policy. Exit 0 compliant, 1 non-compliant,",
		"2 could not verify (unreachable, evidence refused, usage). With --evidence, verifies evidence saved",
		"by `bpfattest quote --out` against the nonce it was asked with, and writes no state.")
	var rf remoteFlags
	rf.register(fs)
	policyFile := fs.String("policy", "", "policy YAML (required; docs/policy.md)")
	allowSim := allowSimulatorFlag(fs)
	var pin pinFlags
	pin.register(fs, "the verifier's file for this agent: the pinned AK and the verified state (read, then replaced atomically)")
	stateFile := &pin.state
	asJSON := fs.Bool("json", false, "print the verdict as JSON (--format json)")
	format := fs.String("format", "text", "output: text, json, or ear (the verdict as a signed EAT Attestation Result, a JWT: docs/ear.md; needs --ear-key)")
	var ef earFlags
	ef.register(fs)
	name := fs.String("name", "", "the host's name in the verdict; default: --agent")
	evidenceFile := fs.String("evidence", "", "verify this saved evidence (bpfattest quote --out) instead of asking an agent")
	nonceHex := fs.String("nonce", "", "with --evidence: the nonce the evidence was quoted over, in hex")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := usageError(stderr, "verify")
	if *evidenceFile != "" || *nonceHex != "" {
		if *asJSON {
			*format = "json"
		}
		return verifyOffline(stdout, stderr, &rf, &pin, &ef, *evidenceFile, *nonceHex, *policyFile, *name, *format, *allowSim, fs.Args())
	}
	switch {
	case fs.NArg() != 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case *policyFile == "":
		return usage("--policy is required")
	case *format != "text" && *format != "json" && *format != "ear":
		return usage("unknown format %q", *format)
	case *asJSON && *format == "ear":
		return usage("--json and --format ear exclude each other")
	}
	if *asJSON {
		*format = "json"
	}
	if err := pin.check(); err != nil {
		return usage("%v", err)
	}
	pol, polBytes, err := readPolicyFile(*policyFile)
	if err != nil {
		return usage("%v", err)
	}
	if *format == "ear" {
		if err := ef.load(polBytes, *allowSim && !pol.AllowSimulator); err != nil {
			return usage("%v", err)
		}
	}
	pol.AllowSimulator = pol.AllowSimulator || *allowSim
	hf, err := pin.load()
	if err != nil {
		return usage("%v", err)
	}
	conn, code, ok := rf.connect(stderr, "verify", exitUnverified)
	if !ok {
		return code
	}
	defer conn.Close()
	host := *name
	if host == "" {
		host = rf.agent
	}
	v, next := verifier.Check(ctx, pb.NewAttestationServiceClient(conn), hf, pol)
	v.Host, v.Agent = host, rf.agent
	if next != nil && *stateFile != "" {
		if err := verifier.WriteHost(*stateFile, next); err != nil {
			fmt.Fprintf(stderr, "bpfattest verify: %v\n", err)
			return exitUnverified
		}
	}
	switch *format {
	case "json":
		err = writeJSON(stdout, v)
	case "ear":
		var tok string
		if tok, err = ef.token(v); err == nil {
			_, err = fmt.Fprintln(stdout, tok)
		}
	default:
		err = printVerdict(stdout, v)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest verify: %v\n", err)
		return exitUnverified
	}
	return exitCode(v.Status)
}

// exitCode maps a verdict's status to the verifier commands' exit code.
func exitCode(status string) int {
	switch status {
	case verifier.StatusCompliant:
		return exitCompliant
	case verifier.StatusNonCompliant:
		return exitNonCompliant
	}
	return exitUnverified
}

// allowSimulatorFlag registers --allow-simulator, which accepts agents that
// say their TPM is the in-process simulator (the policy's allow_simulator).
func allowSimulatorFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("allow-simulator", false, "accept agents whose TPM is the in-process simulator (demos and tests; policy allow_simulator); refused by default")
}

// readPolicy reads and parses a policy file.
func readPolicy(path string) (*attest.Policy, error) {
	p, _, err := readPolicyFile(path)
	return p, err
}

// pinFlags are the flags that say how a verifier-side command pins the
// agent's attestation key: a state file (from enroll or an earlier verify),
// an AK file, or an explicit trust-on-first-use.
type pinFlags struct {
	state string
	ak    string
	tofu  bool
}

func (p *pinFlags) register(fs *flag.FlagSet, stateHelp string) {
	fs.StringVar(&p.state, "state", "", stateHelp)
	fs.StringVar(&p.ak, "ak", "", "pin this AK on first contact: a `FILE` holding its TPMT_PUBLIC (binary, base64, or PEM as bpfattest enroll --ak-out writes)")
	fs.BoolVar(&p.tofu, "tofu", false, "first contact: trust the AK the agent presents (trust on first use; see docs/cli.md)")
}

// check refuses flag combinations that pin nothing or pin twice.
func (p *pinFlags) check() error {
	switch {
	case p.ak != "" && p.tofu:
		return errors.New("--ak and --tofu exclude each other")
	case p.state == "" && p.ak == "" && !p.tofu:
		return errors.New("no AK to pin: give --state FILE (from `bpfattest enroll` or an earlier verify), --ak FILE or --tofu")
	}
	return nil
}

func (p *pinFlags) load() (*verifier.Host, error) { return verifier.Pin(p.state, p.ak, p.tofu) }

// verifyOffline is `verify --evidence FILE --nonce HEX`: saved evidence,
// checked against the pinned AK (from --state, which is read and not
// written, or --ak) and the nonce it answered.
func verifyOffline(stdout, stderr io.Writer, rf *remoteFlags, pin *pinFlags, ef *earFlags, file, nonceHex, policyFile, name, format string, allowSim bool, rest []string) int {
	usage := usageError(stderr, "verify")
	switch {
	case len(rest) != 0:
		return usage("unexpected argument %q", rest[0])
	case file == "" || nonceHex == "":
		return usage("--evidence and --nonce go together")
	case rf.agent != "":
		return usage("--evidence verifies a file: no --agent")
	case policyFile == "":
		return usage("--policy is required")
	case format != "text" && format != "json" && format != "ear":
		return usage("unknown format %q", format)
	case pin.tofu:
		return usage("--tofu with --evidence would trust the AK the evidence carries, which proves nothing: give --state FILE or --ak FILE")
	case pin.state == "" && pin.ak == "":
		return usage("no AK to pin: give --state FILE (from `bpfattest enroll` or verify) or --ak FILE")
	}
	nonce, err := hex.DecodeString(nonceHex)
	if err != nil {
		return usage("--nonce: %v", err)
	}
	if err := evidence.CheckNonce(nonce); err != nil {
		return usage("--nonce: %v", err)
	}
	pol, polBytes, err := readPolicyFile(policyFile)
	if err != nil {
		return usage("%v", err)
	}
	if format == "ear" {
		if err := ef.load(polBytes, allowSim && !pol.AllowSimulator); err != nil {
			return usage("%v", err)
		}
	}
	pol.AllowSimulator = pol.AllowSimulator || allowSim
	hf, err := pin.load()
	if err != nil {
		return usage("%v", err)
	}
	ev, err := verifier.ReadEvidence(file)
	if err != nil {
		return usage("%v", err)
	}
	v := verifier.CheckEvidence(ev, nonce, hf, pol)
	v.Host, v.Agent = name, file
	if v.Host == "" {
		v.Host = "saved evidence"
	}
	switch format {
	case "json":
		err = writeJSON(stdout, v)
	case "ear":
		var tok string
		if tok, err = ef.token(v); err == nil {
			_, err = fmt.Fprintln(stdout, tok)
		}
	default:
		err = printVerdict(stdout, v)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest verify: %v\n", err)
		return exitUnverified
	}
	return exitCode(v.Status)
}
