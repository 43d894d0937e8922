package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bpfattest/bpfattest/ear"
	fleetsvc "github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// runFleet implements `bpfattest fleet SUBCOMMAND`: the client of the
// fleet service's API (bpfattest-verifierd), over gRPC with mutual TLS.
// Exit codes: 0 done, 1 the service refused or failed, 2 usage.
func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	subs := map[string]struct {
		summary string
		run     func(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, asJSON bool) error
		flags   func(fs *flag.FlagSet)
	}{
		"summary":  {"fleet counts by verdict, queue lag, webhook backlog", fleetSummary, nil},
		"agents":   {"list agents [--status S]", fleetAgents, func(fs *flag.FlagSet) { fs.String("status", "", "only this status") }},
		"agent":    {"one agent and its latest verdict: agent NAME", fleetAgent, nil},
		"history":  {"an agent's verdict history: history NAME", fleetHistory, func(fs *flag.FlagSet) { fs.Bool("transitions", false, "transitions only"); fs.Int("limit", 50, "rows") }},
		"register": {"register agents: --inventory FILE, or --name N (--address A | --mode push --cert-sha256 X)", fleetRegister, registerFlags},
		"delete":   {"delete an agent: delete NAME", fleetDelete, nil},
		"ear":      {"the signed EAR of an agent's latest verdict: ear NAME [--verify-key K]", fleetEAR, fleetEARFlags},
		"policy":   {"policies: policy list | policy get NAME [--version N] | policy put NAME FILE", fleetPolicy, func(fs *flag.FlagSet) { fs.Int("version", 0, "policy version (0: latest)") }},
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "usage: bpfattest fleet SUBCOMMAND --server ADDR [--ca F --cert F --key F | --insecure-loopback] [--json] [args]")
		names := make([]string, 0, len(subs))
		for n := range subs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-9s %s\n", n, subs[n].summary)
		}
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	sub, ok := subs[args[0]]
	if !ok {
		return usageError(stderr, "fleet")("unknown subcommand %q", args[0])
	}
	fs := newFlagSet("fleet "+args[0], stderr, "usage: bpfattest fleet "+args[0]+" --server ADDR [TLS flags] [--json] ...", "\n"+sub.summary)
	var rf remoteFlags
	rf.register(fs)
	server := fs.String("server", "", "the fleet service's API address host:port (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if sub.flags != nil {
		sub.flags(fs)
	}
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if rf.agent != "" {
		return usageError(stderr, "fleet")("--agent: use --server")
	}
	if *server == "" {
		return usageError(stderr, "fleet")("--server is required")
	}
	rf.agent = *server
	conn, code, ok := rf.connect(stderr, "fleet", exitFailed)
	if !ok {
		return code
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := sub.run(cctx, pb.NewFleetServiceClient(conn), fs, stdout, *asJSON); err != nil {
		if u, isUsage := err.(fleetUsage); isUsage {
			return usageError(stderr, "fleet "+args[0])("%s", string(u))
		}
		if st, isStatus := status.FromError(err); isStatus {
			fmt.Fprintf(stderr, "bpfattest fleet %s: %s: %s\n", args[0], st.Code(), st.Message())
		} else {
			fmt.Fprintf(stderr, "bpfattest fleet %s: %v\n", args[0], err)
		}
		return exitFailed
	}
	return exitOK
}

// fleetUsage is a usage error of a fleet subcommand.
type fleetUsage string

func (u fleetUsage) Error() string { return string(u) }

func printProto(out io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, string(b))
	return err
}

func fleetSummary(ctx context.Context, c pb.FleetServiceClient, _ *flag.FlagSet, out io.Writer, asJSON bool) error {
	s, err := c.Summary(ctx, &pb.SummaryRequest{})
	if err != nil {
		return err
	}
	if asJSON {
		return printProto(out, s)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tAGENTS")
	for _, st := range []string{verifier.StatusCompliant, verifier.StatusNonCompliant, verifier.StatusUnreachable, verifier.StatusUnverified, "none"} {
		fmt.Fprintf(tw, "%s\t%d\n", st, s.GetByStatus()[st])
	}
	fmt.Fprintf(tw, "total\t%d\n", s.GetAgents())
	tw.Flush()
	_, err = fmt.Fprintf(out, "\nqueue lag %.1fs, %d due, webhook backlog %d (%d given up)\n", s.GetQueueLagSeconds(), s.GetDue(),
		s.GetWebhookBacklog(), s.GetWebhookFailed())
	return err
}

func fleetAgents(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, asJSON bool) error {
	r, err := c.ListAgents(ctx, &pb.ListAgentsRequest{Status: fs.Lookup("status").Value.String()})
	if err != nil {
		return err
	}
	if asJSON {
		return printProto(out, r)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tMODE\tADDRESS\tSTATUS\tVERIFIED\tREASON")
	for _, a := range r.GetAgents() {
		when := "-"
		if a.GetVerifiedAt() != nil {
			when = a.GetVerifiedAt().AsTime().UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.GetName(), a.GetMode(), orDash(a.GetAddress()), a.GetStatus(), when, a.GetReason())
	}
	return tw.Flush()
}

func oneName(fs *flag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", fleetUsage("want one agent name")
	}
	return fs.Arg(0), nil
}

func fleetAgent(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, asJSON bool) error {
	name, err := oneName(fs)
	if err != nil {
		return err
	}
	d, err := c.GetAgent(ctx, &pb.GetAgentRequest{Name: name})
	if err != nil {
		return err
	}
	if asJSON {
		return printProto(out, d)
	}
	a := d.GetAgent()
	fmt.Fprintf(out, "%s (%s %s): %s\n", a.GetName(), a.GetMode(), orDash(a.GetAddress()), a.GetStatus())
	if d.GetVerdictJson() != "" {
		var v verifier.Verdict
		if json.Unmarshal([]byte(d.GetVerdictJson()), &v) == nil {
			for _, r := range v.Reasons() {
				fmt.Fprintf(out, "  %s\n", r)
			}
		}
	}
	return nil
}

func fleetHistory(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, asJSON bool) error {
	name, err := oneName(fs)
	if err != nil {
		return err
	}
	var limit int
	fmt.Sscan(fs.Lookup("limit").Value.String(), &limit)
	r, err := c.History(ctx, &pb.HistoryRequest{Name: name, TransitionsOnly: fs.Lookup("transitions").Value.String() == "true",
		Limit: uint32(max(limit, 0))})
	if err != nil {
		return err
	}
	if asJSON {
		return printProto(out, r)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tSTATUS\tFROM\tSTATE\tREPLICA\tREASON")
	for _, h := range r.GetEntries() {
		from := ""
		if h.GetTransition() {
			from = h.GetPrevStatus()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d→%d\t%s\t%s\n", h.GetAt().AsTime().UTC().Format(time.RFC3339), h.GetStatus(), from,
			h.GetFromStateVersion(), h.GetToStateVersion(), h.GetReplica(), h.GetReason())
	}
	return tw.Flush()
}

func fleetEARFlags(fs *flag.FlagSet) {
	fs.String("verify-key", "", "verify the token with the verifier's public key (PEM or DER PUBLIC KEY, a certificate, or a JWK Set such as GET /api/v1/ear/keys answers) and print its claims")
}

// fleetEAR prints the token of an agent's latest EAR; with --verify-key
// (--key is the TLS client key of every fleet subcommand) it
// verifies it (signature, claims, expiry, and that it is about the agent
// asked for) and prints its claims instead, as ear verify does.
func fleetEAR(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, asJSON bool) error {
	name, err := oneName(fs)
	if err != nil {
		return err
	}
	var verify func(string) (*ear.Token, error)
	if keyFile := fs.Lookup("verify-key").Value.String(); keyFile != "" {
		kb, err := boundedfile.ReadFile(keyFile, maxKeyFileSize)
		if err != nil {
			return fleetUsage("--verify-key: " + err.Error())
		}
		if verify, err = tokenVerifier(kb); err != nil {
			return fleetUsage(fmt.Sprintf("--verify-key %s: %v", keyFile, err))
		}
	}
	r, err := c.GetEAR(ctx, &pb.GetEARRequest{Name: name})
	if err != nil {
		return err
	}
	if verify == nil {
		if asJSON {
			return printProto(out, r)
		}
		_, err = fmt.Fprintln(out, r.GetToken())
		return err
	}
	t, err := verify(r.GetToken())
	if err != nil {
		return fmt.Errorf("the EAR of %s is INVALID: %w", name, err)
	}
	if t.Claims.Subject != name {
		return fmt.Errorf("the EAR of %s is INVALID: it is about %q", name, t.Claims.Subject)
	}
	var b bytes.Buffer
	if asJSON {
		if err := writeJSON(&b, t.Claims); err != nil {
			return err
		}
	} else {
		printToken(&b, 1, t)
	}
	_, err = out.Write(b.Bytes())
	return err
}

func registerFlags(fs *flag.FlagSet) {
	fs.String("inventory", "", "hosts to register (bpfattest scan's inventory; AK and state files are read here and sent)")
	fs.String("state-dir", "", "scan state files (NAME.json) of the inventory's hosts")
	fs.String("policy", "", "policy name for the agents (default: the service's)")
	fs.String("name", "", "one agent's name")
	fs.String("address", "", "its remote API (pull)")
	fs.String("mode", "pull", "pull or push")
	fs.String("cert-sha256", "", "its certificate's SHA-256 (push: the client certificate that names it)")
	fs.String("ak", "", "its AK file to pin")
}

func fleetRegister(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, _ bool) error {
	get := func(n string) string { return fs.Lookup(n).Value.String() }
	var specs []fleetsvc.AgentSpec
	switch {
	case get("inventory") != "" && get("name") != "":
		return fleetUsage("--inventory and --name exclude each other")
	case get("inventory") != "":
		targets, err := verifier.ParseInventory(get("inventory"), get("state-dir"))
		if err != nil {
			return fleetUsage(err.Error())
		}
		if specs, err = fleetsvc.SpecsFromInventory(targets, get("policy")); err != nil {
			return fleetUsage(err.Error())
		}
	case get("name") != "":
		s := fleetsvc.AgentSpec{Name: get("name"), Mode: get("mode"), Address: get("address"), CertSHA256: strings.ReplaceAll(get("cert-sha256"), ":", ""),
			Policy: get("policy")}
		if get("ak") != "" {
			ak, err := verifier.ReadAKFile(get("ak"))
			if err != nil {
				return fleetUsage(err.Error())
			}
			s.AKPublic = ak
		}
		specs = []fleetsvc.AgentSpec{s}
	default:
		return fleetUsage("give --inventory FILE or --name NAME")
	}
	req := &pb.RegisterRequest{}
	for _, s := range specs {
		req.Agents = append(req.Agents, &pb.AgentSpec{Name: s.Name, Mode: s.Mode, Address: s.Address, ServerName: s.ServerName,
			CertSha256: s.CertSHA256, Policy: s.Policy, AkPublic: s.AKPublic, State: s.State, AkPinned: s.AKPinned,
			EkCertificateSha256: s.EKCertSHA256})
	}
	r, err := c.Register(ctx, req)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "registered %d agents\n", r.GetRegistered())
	return err
}

func fleetDelete(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, _ bool) error {
	name, err := oneName(fs)
	if err != nil {
		return err
	}
	if _, err := c.DeleteAgent(ctx, &pb.DeleteAgentRequest{Name: name}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "deleted %s\n", name)
	return err
}

func fleetPolicy(ctx context.Context, c pb.FleetServiceClient, fs *flag.FlagSet, out io.Writer, asJSON bool) error {
	args := fs.Args()
	switch {
	case len(args) == 1 && args[0] == "list":
		r, err := c.ListPolicies(ctx, &pb.ListPoliciesRequest{})
		if err != nil {
			return err
		}
		if asJSON {
			return printProto(out, r)
		}
		for _, p := range r.GetPolicies() {
			fmt.Fprintf(out, "%s\tversion %d\tsha256 %s\n", p.GetName(), p.GetVersion(), p.GetSha256())
		}
		return nil
	case len(args) == 2 && args[0] == "get":
		var v int
		fmt.Sscan(fs.Lookup("version").Value.String(), &v)
		p, err := c.GetPolicy(ctx, &pb.GetPolicyRequest{Name: args[1], Version: uint32(max(v, 0))})
		if err != nil {
			return err
		}
		if asJSON {
			return printProto(out, p)
		}
		_, err = out.Write(p.GetBody())
		return err
	case len(args) == 3 && args[0] == "put":
		body, err := boundedfile.ReadFile(args[2], fleetsvc.MaxPolicySize)
		if err != nil {
			return fleetUsage(err.Error())
		}
		p, err := c.PutPolicy(ctx, &pb.PutPolicyRequest{Name: args[1], Body: body})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s version %d\n", p.GetName(), p.GetVersion())
		return err
	}
	return fleetUsage("policy list | policy get NAME [--version N] | policy put NAME FILE")
}
