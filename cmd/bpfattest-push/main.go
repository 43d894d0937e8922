// Command bpfattest-push is the push sidecar of a bpfattest agent on a node
// without an inbound port: it reads quotes from the agent's remote API on
// loopback and pushes them to the fleet service (bpfattest-verifierd
// --push-listen), which names the node by the sidecar's client
// certificate (register its SHA-256 as the agent's cert_sha256, mode
// push).
//
//	bpfattest-push --agent 127.0.0.1:7433 [--agent-insecure-loopback | --agent-ca F ...] \
//	    --verifier fleet.example:7801 --ca VERIFIER-CA --cert NODE.pem --key NODE.key
//
// Exit codes: 0 after SIGTERM/SIGINT; 2 usage error.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/fleet/pushclient"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

const maxTLSFile = 1 << 20

// maxEvidenceSize bounds the agent's answer, as the service bounds the
// upload.
const maxEvidenceSize = 64 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("bpfattest-push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agent := fs.String("agent", "127.0.0.1:7433", "the agent's remote API")
	agentInsecure := fs.Bool("agent-insecure-loopback", false, "talk to a loopback agent without TLS")
	agentCA := fs.String("agent-ca", "", "CA (PEM) of the agent's server certificate")
	agentName := fs.String("agent-server-name", "", "name to verify in the agent's certificate")
	verifierAddr := fs.String("verifier", "", "the fleet service's push address host:port (required)")
	ca := fs.String("ca", "", "CA (PEM) of the fleet service's certificate; default: system roots")
	serverName := fs.String("server-name", "", "name to verify in the service's certificate")
	cert := fs.String("cert", "", "this node's client certificate (PEM), which names it to the service (required)")
	key := fs.String("key", "", "its key (PEM) (required)")
	minBackoff := fs.Duration("min-backoff", 10*time.Second, "first delay after a failed round")
	maxBackoff := fs.Duration("max-backoff", 5*time.Minute, "longest delay after failed rounds")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "bpfattest-push: %v\n", err)
		return 2
	}
	if *verifierAddr == "" || *cert == "" || *key == "" {
		return usage(errors.New("--verifier, --cert and --key are required"))
	}
	vcfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: *serverName}
	if *ca != "" {
		p, err := certPool(*ca)
		if err != nil {
			return usage(fmt.Errorf("--ca: %w", err))
		}
		vcfg.RootCAs = p
	}
	c, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		return usage(fmt.Errorf("--cert/--key: %w", err))
	}
	vcfg.Certificates = []tls.Certificate{c}
	vconn, err := grpc.NewClient("passthrough:///"+*verifierAddr, grpc.WithTransportCredentials(credentials.NewTLS(vcfg)))
	if err != nil {
		return usage(err)
	}
	defer vconn.Close()
	var acreds credentials.TransportCredentials
	if *agentInsecure {
		if err := checkLoopback(*agent); err != nil {
			return usage(fmt.Errorf("--agent-insecure-loopback: %w", err))
		}
		acreds = insecure.NewCredentials()
	} else {
		acfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: *agentName}
		if *agentCA != "" {
			p, err := certPool(*agentCA)
			if err != nil {
				return usage(fmt.Errorf("--agent-ca: %w", err))
			}
			acfg.RootCAs = p
		}
		acreds = credentials.NewTLS(acfg)
	}
	aconn, err := grpc.NewClient("passthrough:///"+*agent, grpc.WithTransportCredentials(acreds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxEvidenceSize)))
	if err != nil {
		return usage(err)
	}
	defer aconn.Close()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	pc := &pushclient.Client{Agent: pb.NewAttestationServiceClient(aconn), Verifier: pb.NewPushServiceClient(vconn),
		MinBackoff: *minBackoff, MaxBackoff: *maxBackoff, Logger: log}
	log.Info("pushing", "agent", *agent, "verifier", *verifierAddr)
	if err := pc.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "bpfattest-push: %v\n", err)
		return 1
	}
	return 0
}

func certPool(file string) (*x509.CertPool, error) {
	b, err := boundedfile.ReadFile(file, maxTLSFile)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return p, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address", addr)
}
