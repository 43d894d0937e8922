package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/ear"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/verifier"
)

// allowSimulatorPolicyID names what --allow-simulator adds to a policy
// file, as a second appraisal policy id applied after the file's.
const allowSimulatorPolicyID = "https://github.com/bpfattest/bpfattest/ear/policy/allow-simulator"

// earFlags are the flags of the verifier commands that write EARs
// (--format ear): the verifier's signing key and the token's options.
type earFlags struct {
	key       string
	alg       string
	validity  time.Duration
	noVerdict bool

	signer    crypto.Signer
	policyIDs []string
}

func (e *earFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.key, "ear-key", "", "with --format ear: the verifier's private key that signs the tokens (PEM or DER; PKCS#8, PKCS#1 or SEC 1)")
	fs.StringVar(&e.alg, "ear-alg", "", "with --format ear: the JWS algorithm (ES256, ES384, PS256, RS256, EdDSA); default: the key's (ES256 for P-256, PS256 for RSA)")
	fs.DurationVar(&e.validity, "ear-validity", 0, "with --format ear: the tokens expire this long after they are issued (exp); 0: no exp")
	fs.BoolVar(&e.noVerdict, "ear-omit-verdict", false, "with --format ear: leave the verdict extension out of the tokens")
}

// load checks the flags for --format ear and reads the key; policy is the
// policy file's bytes and allowSim whether --allow-simulator relaxed it.
func (e *earFlags) load(policy []byte, allowSim bool) error {
	if e.key == "" {
		return errors.New("--format ear needs --ear-key")
	}
	if e.validity < 0 {
		return fmt.Errorf("--ear-validity %v is negative", e.validity)
	}
	k, err := readSigner(e.key)
	if err != nil {
		return fmt.Errorf("--ear-key: %w", err)
	}
	alg := ear.Algorithm(e.alg)
	if alg == "" {
		if alg, err = ear.DefaultAlgorithm(k.Public()); err != nil {
			return fmt.Errorf("--ear-key: %w", err)
		}
	}
	if !slices.Contains([]ear.Algorithm{ear.ES256, ear.ES384, ear.PS256, ear.RS256, ear.EdDSA}, alg) {
		return fmt.Errorf("--ear-alg %q: want ES256, ES384, PS256, RS256 or EdDSA", e.alg)
	}
	e.signer, e.alg = k, string(alg)
	e.policyIDs = []string{ear.PolicyID(policy)}
	if allowSim {
		e.policyIDs = append(e.policyIDs, allowSimulatorPolicyID)
	}
	return nil
}

// token signs the EAR of one verdict.
func (e *earFlags) token(v *verifier.Verdict) (string, error) {
	c, err := ear.FromVerdict(v, ear.Options{Validity: e.validity, PolicyIDs: e.policyIDs, OmitVerdict: e.noVerdict})
	if err != nil {
		return "", err
	}
	return ear.Sign(c, e.signer, ear.Algorithm(e.alg))
}

// readPolicyFile reads and parses a policy file, and returns its bytes
// too (an EAR names the policy by their digest).
func readPolicyFile(path string) (*attest.Policy, []byte, error) {
	b, err := boundedfile.ReadFile(path, attest.MaxPolicySize)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	p, err := attest.ParsePolicy(b)
	if err != nil {
		return nil, nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, b, nil
}

const earVerifyUsage = "usage: bpfattest ear verify TOKEN --key K [--json]"

// runEAR implements `bpfattest ear verify TOKEN --key K [--json]`.
func runEAR(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) > 0 && args[0] == "verify":
		return runEARVerify(ctx, args[1:], stdout, stderr)
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help"):
		fmt.Fprintln(stderr, earVerifyUsage)
		fmt.Fprintln(stderr, "run 'bpfattest ear verify -h' for its flags")
		return exitOK
	case len(args) > 0:
		fmt.Fprintf(stderr, "bpfattest ear: unknown subcommand %q\n", args[0])
	}
	fmt.Fprintln(stderr, earVerifyUsage)
	return exitUsage
}

// maxTokenFileSize bounds a file of tokens (scan --format ear writes one
// line per host).
const maxTokenFileSize = 1 << 30

func runEARVerify(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ear verify", stderr,
		earVerifyUsage,
		"\nChecks EAR tokens (docs/ear.md): TOKEN is a file of tokens, one per line, - for standard input, or a token.",
		"Exit 0 every token valid, 1 some token invalid (signature or claims), 2 usage or unreadable input.")
	keyFile := fs.String("key", "", "the verifier's public key (PEM or DER PUBLIC KEY), a certificate holding it, or a JWK Set (the fleet service's GET /api/v1/ear/keys), whose key each token's kid chooses (required)")
	asJSON := fs.Bool("json", false, "print each token's claims-set as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := usageError(stderr, "ear verify")
	switch {
	case fs.NArg() != 1:
		return usage("want one TOKEN argument, got %d", fs.NArg())
	case *keyFile == "":
		return usage("--key is required")
	}
	kb, err := boundedfile.ReadFile(*keyFile, maxKeyFileSize)
	if err != nil {
		return usage("--key: %v", err)
	}
	verify, err := tokenVerifier(kb)
	if err != nil {
		return usage("--key %s: %v", *keyFile, err)
	}
	tokens, err := readTokens(fs.Arg(0))
	if err != nil {
		return usage("%v", err)
	}
	code := exitOK
	var out bytes.Buffer
	for i, tok := range tokens {
		t, err := verify(tok)
		if err != nil {
			fmt.Fprintf(stderr, "bpfattest ear verify: token %d: INVALID: %v\n", i+1, err)
			code = exitFailed
			continue
		}
		if *asJSON {
			if err := writeJSON(&out, t.Claims); err != nil {
				fmt.Fprintf(stderr, "bpfattest ear verify: %v\n", err)
				return exitUsage
			}
			continue
		}
		printToken(&out, i+1, t)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return exitUsage
	}
	return code
}

// tokenVerifier reads --key: a JWK Set (a JSON object) or a public key or
// certificate, and returns what verifies a token with it.
func tokenVerifier(b []byte) (func(string) (*ear.Token, error), error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		set, err := ear.ParseKeySet(t)
		if err != nil {
			return nil, err
		}
		return func(tok string) (*ear.Token, error) { return ear.VerifyWithKeySet(tok, set, ear.VerifyOptions{}) }, nil
	}
	pub, err := ear.ParsePublicKey(b)
	if err != nil {
		return nil, err
	}
	return func(tok string) (*ear.Token, error) { return ear.Verify(tok, pub, ear.VerifyOptions{}) }, nil
}

// readTokens reads the TOKEN argument: a token itself (three base64url
// parts), - for standard input, or a file; one token per non-empty line.
func readTokens(arg string) ([]string, error) {
	var b []byte
	switch {
	case strings.Count(arg, ".") == 2 && !strings.ContainsAny(arg, "/ \n") && strings.HasPrefix(arg, "ey"):
		b = []byte(arg)
	case arg == "-":
		var err error
		if b, err = io.ReadAll(io.LimitReader(os.Stdin, maxTokenFileSize+1)); err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		if len(b) > maxTokenFileSize {
			return nil, fmt.Errorf("standard input: more than %d bytes", maxTokenFileSize)
		}
	default:
		var err error
		if b, err = boundedfile.ReadFile(arg, maxTokenFileSize); err != nil {
			return nil, err
		}
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), ear.MaxTokenSize+2)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", arg, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no token", arg)
	}
	return out, nil
}

// printToken writes one verified token's claims for people.
func printToken(b *bytes.Buffer, n int, t *ear.Token) {
	c := t.Claims
	fmt.Fprintf(b, "token %d:   valid (%s, kid %s)\n", n, t.Algorithm, orDash(t.KeyID))
	fmt.Fprintf(b, "profile:    %s\n", c.Profile)
	fmt.Fprintf(b, "subject:    %s\n", orDash(c.Subject))
	fmt.Fprintf(b, "issued:     %s\n", time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339))
	if c.Expires != 0 {
		fmt.Fprintf(b, "expires:    %s\n", time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(b, "verifier:   %s (%s)\n", c.VerifierID.Build, c.VerifierID.Developer)
	if c.Status != nil {
		fmt.Fprintf(b, "status:     %s\n", *c.Status)
	}
	labels := make([]string, 0, len(c.Submods))
	for l := range c.Submods {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	for _, l := range labels {
		a := c.Submods[l]
		fmt.Fprintf(b, "submod %q: %s\n", l, a.Status)
		if a.Vector != nil {
			for _, nc := range a.Vector.Claims() {
				if nc.Value == ear.NoClaim && !slices.Contains([]string{ear.InstanceIdentity, ear.Configuration, ear.Executables, ear.Hardware}, nc.Name) {
					continue
				}
				fmt.Fprintf(b, "  %-18s %4d %-15s %s\n", nc.Name, nc.Value, nc.Value.Tier(), a.Reasons[nc.Name])
			}
		}
		for _, id := range a.PolicyIDs {
			fmt.Fprintf(b, "  policy:     %s\n", id)
		}
		if len(a.Nonce) > 0 {
			fmt.Fprintf(b, "  nonce:      %x\n", []byte(a.Nonce))
		}
		if v := a.Verdict; v != nil {
			fmt.Fprintf(b, "  verdict:    %s, %d load(s), %d violation(s)\n", v.Status, len(v.Programs)+len(v.Pending), len(v.Violations))
		}
	}
}
