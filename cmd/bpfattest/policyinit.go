package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/atomicfile"
	"github.com/bpfattest/bpfattest/measure"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// runPolicy dispatches `bpfattest policy SUBCOMMAND`.
const policyInitUsage = "usage: bpfattest policy init --agent ADDR --out FILE [--state FILE | --ak FILE | --tofu] [TLS flags]"

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stderr, policyInitUsage)
		fmt.Fprintln(stderr, "run 'bpfattest policy init -h' for its flags")
		return exitOK
	}
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, policyInitUsage)
		return exitUsage
	}
	return runPolicyInit(ctx, args[1:], stdout, stderr)
}

// runPolicyInit implements `bpfattest policy init --agent ADDR --out FILE`:
// it verifies a known-good host exactly as verify does, with an empty
// policy, and writes a policy that pins what the verified log shows
// loaded there: every signer, scheme and program type, and each
// artifact's loader, data and program digests; unmeasured programs
// forbidden and every load required to be pinned. Exit 0 written; 1 the
// host's evidence did not verify or the policy could not be made; 2 usage.
func runPolicyInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf remoteFlags
	rf.register(fs)
	out := fs.String("out", "", "write the policy here (required)")
	allowSim := allowSimulatorFlag(fs)
	var pin pinFlags
	pin.register(fs, "the verifier's file for this agent (read and updated, as verify does)")
	stateFile := &pin.state
	fs.Usage = func() {
		fmt.Fprintln(stderr, policyInitUsage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usage := usageError(stderr, "policy init")
	switch {
	case fs.NArg() != 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case *out == "":
		return usage("--out is required")
	}
	if err := pin.check(); err != nil {
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
		fmt.Fprintf(stderr, "bpfattest policy init: %v\n", err)
		return exitFailed
	}
	defer conn.Close()
	client := pb.NewAttestationServiceClient(conn)
	if len(hf.AKPublic) == 0 {
		id, err := client.Identity(ctx, &pb.IdentityRequest{})
		if err != nil {
			fmt.Fprintf(stderr, "bpfattest policy init: identity: %v\n", err)
			return exitFailed
		}
		hf.AKPublic = id.GetAkPublic()
	}
	// The whole log, so the policy sees every load of the boot.
	res, err := verifier.QuoteAndVerify(ctx, client, hf.AKPublic, nil, 0, rf.limits())
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest policy init: %s: %v\n", rf.agent, err)
		return exitFailed
	}
	doc, notes, err := policyFromResult(res, rf.agent, *allowSim, time.Now().UTC())
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest policy init: %v\n", err)
		return exitFailed
	}
	if err := atomicfile.Write(*out, doc, 0o644); err != nil {
		fmt.Fprintf(stderr, "bpfattest policy init: %v\n", err)
		return exitFailed
	}
	if *stateFile != "" {
		next := *hf
		next.State = res.State()
		if err := verifier.WriteHost(*stateFile, &next); err != nil {
			fmt.Fprintf(stderr, "bpfattest policy init: %v\n", err)
			return exitFailed
		}
	}
	fmt.Fprintf(stdout, "policy:  %s\n", *out)
	fmt.Fprintf(stdout, "from:    %s, boot %s, records 0..%d\n", rf.agent, res.BootID(), res.NextRecord()-1)
	for _, n := range notes {
		fmt.Fprintf(stdout, "note:    %s\n", n)
	}
	return exitOK
}

// policyYAML is the policy file layout policy init writes (docs/policy.md);
// field order is the file's order.
type policyYAML struct {
	Version             int                     `yaml:"version"`
	RequireSigned       bool                    `yaml:"require_signed"`
	ForbidUnmeasured    bool                    `yaml:"forbid_unmeasured"`
	RequirePinned       bool                    `yaml:"require_pinned"`
	AllowedSchemes      []string                `yaml:"allowed_schemes,omitempty,flow"`
	AllowedSigners      []signerYAML            `yaml:"allowed_signers,omitempty"`
	AllowedProgramTypes []string                `yaml:"allowed_program_types,omitempty,flow"` // enum bpf_prog_type names (attest.ProgramTypeName)
	Artifacts           map[string]artifactYAML `yaml:"artifacts,omitempty"`
	AllowedUnmeasured   []unmeasuredYAML        `yaml:"allowed_unmeasured,omitempty"`
	ForbidUnmeasuredH   bool                    `yaml:"forbid_unmeasured_history"`
	MaxRefusedLoads     *int                    `yaml:"max_refused_loads,omitempty"`
	ForbidLostEvents    bool                    `yaml:"forbid_lost_events"`
	RequireEventObs     bool                    `yaml:"require_event_observer"`
	AllowSimulator      bool                    `yaml:"allow_simulator,omitempty"`
	bootYAML            `yaml:",inline"`
}

type unmeasuredYAML struct {
	Name string `yaml:"name,omitempty"`
	Type string `yaml:"type,omitempty"`
	Tag  string `yaml:"tag"`
}

// bootYAML is the boot part of the policy policy init writes
// (policyinit_boot.go).
type bootYAML struct {
	RequireFirmwareLog             bool     `yaml:"require_firmware_log,omitempty"`
	RequireSecureBoot              bool     `yaml:"require_secure_boot,omitempty"`
	AllowedBootApps                []string `yaml:"allowed_boot_apps,omitempty"`
	AllowedKernelSHA256            []string `yaml:"allowed_kernel_sha256,omitempty"`
	ForbiddenCmdlineWords          []string `yaml:"forbidden_cmdline_words,omitempty,flow"`
	RequiredLockdown               string   `yaml:"required_lockdown,omitempty"`
	RequireUnprivilegedBPFDisabled bool     `yaml:"require_unprivileged_bpf_disabled,omitempty"`
}

type signerYAML struct {
	CertSHA256 string `yaml:"cert_sha256,omitempty"`
	Subject    string `yaml:"subject,omitempty"`
}

type artifactYAML struct {
	LoaderSHA256 string            `yaml:"loader_sha256"`
	DataSHA256   string            `yaml:"data_sha256"`
	Programs     map[string]string `yaml:"programs,omitempty"`
}

// policyFromResult builds the policy of a known-good host from its
// verified Result, checks that the host's measured loads satisfy it
// (its unmeasured programs are what it forbids), and returns the YAML and notes
// for the operator.
func policyFromResult(res *attest.Result, agent string, allowSim bool, now time.Time) ([]byte, []string, error) {
	p := policyYAML{Version: attest.PolicyVersion, ForbidUnmeasured: true, RequirePinned: true, RequireSigned: true,
		Artifacts: map[string]artifactYAML{}, ForbidUnmeasuredH: true, ForbidLostEvents: true}
	var notes []string
	loads := append(res.Programs(), res.Pending()...)
	for _, prog := range loads {
		m := prog.Measurement
		if s := m.Scheme.String(); !slices.Contains(p.AllowedSchemes, s) {
			p.AllowedSchemes = append(p.AllowedSchemes, s)
		}
		if m.Verdict.String() != "OK" {
			p.RequireSigned = false
			notes = append(notes, fmt.Sprintf("record %d (%s) is not signed by a trusted signer (%s): require_signed is off", prog.Record, m.Name, m.Verdict))
		} else if m.Signer != nil && len(m.Signer.CertSHA256) > 0 {
			s := signerYAML{CertSHA256: hex.EncodeToString(m.Signer.CertSHA256), Subject: m.Signer.Subject}
			if !slices.Contains(p.AllowedSigners, s) {
				p.AllowedSigners = append(p.AllowedSigners, s)
			}
		}
		a := artifactYAML{LoaderSHA256: hex.EncodeToString(m.LoaderSHA256[:]), DataSHA256: hex.EncodeToString(m.DataSHA256[:]),
			Programs: map[string]string{}}
		for _, d := range m.Programs {
			a.Programs[d.Name] = hex.EncodeToString(d.Digest[:])
			if t := attest.ProgramTypeName(d.Type); !slices.Contains(p.AllowedProgramTypes, t) {
				p.AllowedProgramTypes = append(p.AllowedProgramTypes, t)
			}
		}
		if prev, ok := p.Artifacts[m.Name]; ok && !artifactEqual(prev, a) {
			return nil, nil, fmt.Errorf("policy/init: artifact %q is loaded twice with different digests (records include %d): pin it by hand", m.Name, prog.Record)
		}
		p.Artifacts[m.Name] = a
	}
	if len(loads) == 0 {
		notes = append(notes, "no measured load on the host: the policy allows none")
		p.AllowedSchemes, p.AllowedProgramTypes = nil, nil
	}
	if !p.RequireSigned {
		p.AllowedSigners = nil
	}
	// Programs loaded outside the agent on a known-good host (systemd's
	// cgroup programs, loaded at boot before any agent) are allowed by
	// name, type and tag, and nothing else: one more unknown program, now
	// or at any time of a verified range, breaks the policy.
	h := res.History()
	seen := append(res.Unmeasured(), h.Unmeasured...)
	baseline := 0
	for _, u := range seen {
		kp := u.Program
		e := unmeasuredYAML{Name: kp.Name, Type: attest.ProgramTypeName(kp.Type), Tag: hex.EncodeToString(kp.Tag[:])}
		if slices.Contains(p.AllowedUnmeasured, e) {
			continue
		}
		p.AllowedUnmeasured = append(p.AllowedUnmeasured, e)
		if kp.Discovery == measure.DiscoveredAtStart {
			baseline++
		}
	}
	// Programs that came and went are known by their tag only.
	for _, t := range h.Transient {
		tag := hex.EncodeToString(t.Program.Tag[:])
		if slices.ContainsFunc(p.AllowedUnmeasured, func(e unmeasuredYAML) bool { return e.Tag == tag }) {
			continue
		}
		p.AllowedUnmeasured = append(p.AllowedUnmeasured, unmeasuredYAML{Tag: tag})
	}
	if n := len(p.AllowedUnmeasured); n > 0 {
		notes = append(notes, fmt.Sprintf("%d program(s) loaded outside the agent (%d present when it started) are allowed by name, type and tag: review allowed_unmeasured", n, baseline))
	}
	if len(h.Refused) == 0 {
		zero := 0
		p.MaxRefusedLoads = &zero
	} else {
		notes = append(notes, fmt.Sprintf("the host refused %d load(s): max_refused_loads is left out", len(h.Refused)))
	}
	if len(h.EventsLost) > 0 {
		p.ForbidLostEvents = false
		notes = append(notes, "the kernel dropped program events on the host: forbid_lost_events is off")
	}
	if a := res.Agent(); a != nil {
		p.RequireEventObs = a.Observer == cel.ObserverEvents
		if !p.RequireEventObs {
			notes = append(notes, fmt.Sprintf("the agent observes by %q, not the kernel's program events: require_event_observer is off", a.Observer))
		}
		if a.TPM == cel.TPMSimulator {
			if !allowSim {
				return nil, nil, fmt.Errorf("policy/init: the host's TPM is the in-process simulator: pass --allow-simulator to write a policy that accepts it (demos and tests only)")
			}
			p.AllowSimulator = true
			notes = append(notes, "the host's TPM is the in-process simulator: allow_simulator is on (demos and tests only)")
		}
	}
	slices.Sort(p.AllowedSchemes)
	slices.Sort(p.AllowedProgramTypes)
	var bootNotes []string
	p.bootYAML, bootNotes = bootPolicyFromResult(res)
	notes = append(notes, bootNotes...)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by bpfattest policy init from %s (boot %s, records 0..%d) at %s.\n",
		agent, res.BootID(), res.NextRecord()-1, now.Format(time.RFC3339))
	fmt.Fprintln(&b, "# Pins the signers, schemes, program types and digests loaded there; forbids anything else.")
	fmt.Fprintln(&b, "# Pins the boot as verified there: firmware log, Secure Boot, boot applications, kernel, lockdown.")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, nil, fmt.Errorf("policy/init: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, nil, fmt.Errorf("policy/init: %w", err)
	}
	pol, err := attest.ParsePolicy(b.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("policy/init: the written policy does not parse: %w", err)
	}
	if viol := attest.Evaluate(res, pol); len(viol) > 0 {
		v := viol[0]
		if v.Artifact == attest.BootArtifact && v.Record == 0 {
			return nil, nil, fmt.Errorf("policy/init: the host's boot breaks its own policy: %v", v)
		}
		return nil, nil, fmt.Errorf("policy/init: the host breaks its own policy: %v", v)
	}
	return b.Bytes(), notes, nil
}

func artifactEqual(a, b artifactYAML) bool {
	if a.LoaderSHA256 != b.LoaderSHA256 || a.DataSHA256 != b.DataSHA256 || len(a.Programs) != len(b.Programs) {
		return false
	}
	for k, v := range a.Programs {
		if b.Programs[k] != v {
			return false
		}
	}
	return true
}
