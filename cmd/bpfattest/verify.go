package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
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
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf remoteFlags
	rf.register(fs)
	policyFile := fs.String("policy", "", "policy YAML (required; docs/policy.md)")
	var pin pinFlags
	pin.register(fs, "the verifier's file for this agent: the pinned AK and the verified state (read, then replaced atomically)")
	stateFile := &pin.state
	asJSON := fs.Bool("json", false, "print the verdict as JSON")
	name := fs.String("name", "", "the host's name in the verdict; default: --agent")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bpfattest verify --agent ADDR --policy P [--state FILE] [--ak FILE | --tofu] [--json] [TLS flags]")
		fmt.Fprintln(stderr, "\nVerifies an agent's quote and log and evaluates a policy. Exit 0 compliant, 1 non-compliant,")
		fmt.Fprintln(stderr, "2 could not verify (unreachable, evidence refused, usage).")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := usageError(stderr, "verify")
	switch {
	case fs.NArg() != 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case *policyFile == "":
		return usage("--policy is required")
	}
	if err := pin.check(); err != nil {
		return usage("%v", err)
	}
	pol, err := readPolicy(*policyFile)
	if err != nil {
		return usage("%v", err)
	}
	hf, err := pin.load()
	if err != nil {
		return usage("%v", err)
	}
	conn, err := dialRemote(&rf)
	if err != nil {
		if errors.Is(err, errDialUsage) {
			return usage("%v", err)
		}
		fmt.Fprintf(stderr, "bpfattest verify: %v\n", err)
		return exitUnverified
	}
	defer conn.Close()
	host := *name
	if host == "" {
		host = rf.agent
	}
	v, next := verifyAgent(ctx, pb.NewAttestationServiceClient(conn), host, rf.agent, hf, pol)
	if next != nil && *stateFile != "" {
		if err := writeHostFile(*stateFile, next); err != nil {
			fmt.Fprintf(stderr, "bpfattest verify: %v\n", err)
			return exitUnverified
		}
	}
	if *asJSON {
		err = writeJSON(stdout, v)
	} else {
		err = printVerdict(stdout, v)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest verify: %v\n", err)
		return exitUnverified
	}
	return v.exitCode()
}

// readPolicy reads and parses a policy file.
func readPolicy(path string) (*attest.Policy, error) {
	b, err := boundedfile.ReadFile(path, attest.MaxPolicySize)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := attest.ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// loadPin decides which AK to pin: the state file's, when it has one;
// otherwise the --ak file's or, with --tofu, the one the agent presents
// (resolved in verifyAgent). A state file that pins an AK is never
// overridden: --ak or --tofu against it is an error, so a changed AK is
// always a decision somebody made by hand.
func loadPin(stateFile, akFile string, tofu bool) (*hostFile, error) {
	var hf *hostFile
	if stateFile != "" {
		var err error
		hf, err = readHostFile(stateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			hf = nil
		case err != nil:
			return nil, err
		}
	}
	if hf != nil && len(hf.AKPublic) > 0 {
		if akFile != "" || tofu {
			return nil, fmt.Errorf("state %s already pins an AK (%s); remove the file to pin another", stateFile, hf.Pinned)
		}
		return hf, nil
	}
	switch {
	case akFile != "":
		ak, err := readAKFile(akFile)
		if err != nil {
			return nil, err
		}
		return &hostFile{Version: hostFileVersion, AKPublic: ak, Pinned: pinAKFile}, nil
	case tofu:
		return &hostFile{Version: hostFileVersion, Pinned: pinTOFU}, nil
	}
	if stateFile == "" {
		return nil, errors.New("no AK pinned: give --state FILE (from `bpfattest enroll`), --ak FILE or --tofu")
	}
	return nil, fmt.Errorf("state %s pins no AK: enroll first (`bpfattest enroll`), or give --ak FILE or --tofu", stateFile)
}

// verifyAgent runs one verification of an agent: identity (first contact
// with --tofu), quote over a fresh nonce from the State's next record,
// Verify, Evaluate. It returns the verdict and, when the evidence
// verified, the host file to store. An agent rebooted since the State
// answers from record 0 (the old record number is past its new log, or
// the log misses the new boot's header): asked again from 0 with the same
// State, Verify proves the reboot.
func verifyAgent(ctx context.Context, client pb.AttestationServiceClient, host, addr string, hf *hostFile, pol *attest.Policy) (*verdict, *hostFile) {
	v := &verdict{Host: host, Agent: addr, AKPinned: hf.Pinned}
	if len(hf.AKPublic) == 0 {
		id, err := client.Identity(ctx, &pb.IdentityRequest{})
		if err != nil {
			return v.rpcFailed("identity", err), nil
		}
		hf = &hostFile{Version: hostFileVersion, AKPublic: id.GetAkPublic(), Pinned: pinTOFU}
	}
	var from uint64
	if hf.State != nil {
		from = hf.State.NextRecord()
	}
	res, err := quoteAndVerify(ctx, client, hf, from)
	if from != 0 && newBoot(err) {
		res, err = quoteAndVerify(ctx, client, hf, 0)
	}
	if err != nil {
		var rpc *rpcError
		if errors.As(err, &rpc) {
			return v.rpcFailed("quote", rpc.err), nil
		}
		v.Status, v.Reason = statusUnverified, err.Error()
		return v, nil
	}
	v.fill(res, attest.Evaluate(res, pol))
	next := *hf
	next.State = res.State()
	return v, &next
}

// newBoot reports whether a failed verification from the State's next
// record may be a reboot: the log does not start with the new boot's
// header (MissingBootHeader), or the agent's new log is shorter than the
// State's record number (INVALID_ARGUMENT from Quote).
func newBoot(err error) bool {
	var rpc *rpcError
	return errors.Is(err, attest.MissingBootHeader) || (errors.As(err, &rpc) && status.Code(rpc.err) == codes.InvalidArgument)
}

// rpcError marks a failed call to the agent (as opposed to evidence that
// does not verify).
type rpcError struct{ err error }

func (e *rpcError) Error() string { return "quote: " + e.err.Error() }
func (e *rpcError) Unwrap() error { return e.err }

// quoteAndVerify asks for one quote and verifies it.
func quoteAndVerify(ctx context.Context, client pb.AttestationServiceClient, hf *hostFile, from uint64) (*attest.Result, error) {
	nonce := make([]byte, 32)
	rand.Read(nonce)
	m, err := fetchEvidence(ctx, client, nonce, from)
	if err != nil {
		return nil, &rpcError{err}
	}
	ev, err := evidence.FromProto(m)
	if err != nil {
		return nil, err
	}
	return attest.Verify(ev, attest.VerifyOptions{Nonce: nonce, AKPublic: hf.AKPublic, State: hf.State})
}

// rpcFailed records a failed call: unreachable when the agent could not be
// reached in time, could-not-verify when it answered with an error.
func (v *verdict) rpcFailed(call string, err error) *verdict {
	st := status.Convert(err)
	v.Status = statusUnverified
	if st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled {
		v.Status = statusUnreachable
	}
	v.Reason = fmt.Sprintf("%s: %s: %s", call, st.Code(), st.Message())
	return v
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
	fs.StringVar(&p.ak, "ak", "", "pin this AK on first contact: its TPMT_PUBLIC (binary, or base64/PEM as `bpfattest enroll` writes)")
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

func (p *pinFlags) load() (*hostFile, error) { return loadPin(p.state, p.ak, p.tofu) }
