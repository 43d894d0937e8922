package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/agent/service"
	"github.com/bpfattest/bpfattest/verifier"
)

// defaultSocket is bpfattestd's default local socket.
const defaultSocket = "/run/bpfattest/bpfattestd.sock"

// maxLocalResponse bounds a response on the local socket (a load's answer,
// the agent's status).
const maxLocalResponse = 16 << 20

// dialLocal connects to the agent's local socket. The socket is
// authenticated by the kernel on both sides: the agent reads our
// credentials, and only root or the agent's group can open the socket.
func dialLocal(socket string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix:"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxLocalResponse)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", socket, err)
	}
	return conn, nil
}

// remoteFlags are the connection flags of commands that talk to an agent's
// remote API.
type remoteFlags struct {
	agent            string
	insecureLoopback bool
	ca, cert, key    string
	serverName       string
	// maxLog bounds the log bytes held for one host (verifier.Limits).
	maxLog int64
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.agent, "agent", "", "agent address host:port (required)")
	r.registerTLS(fs)
}

// registerTLS registers the connection flags but --agent, for commands
// that take their agents' addresses elsewhere (scan: the inventory).
func (r *remoteFlags) registerTLS(fs *flag.FlagSet) {
	fs.BoolVar(&r.insecureLoopback, "insecure-loopback", false, "no TLS (loopback agents only; demos)")
	fs.StringVar(&r.ca, "ca", "", "CA certificate (PEM) that issued the agent's certificate; default: system roots")
	fs.StringVar(&r.cert, "cert", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&r.key, "key", "", "client key (PEM) for mutual TLS")
	fs.StringVar(&r.serverName, "server-name", "", "name to verify in the agent's certificate; default: the host part of the agent's address")
	fs.Int64Var(&r.maxLog, "max-log", 0, fmt.Sprintf("log bytes held for one host at most: the records read with Events and the quote's (0: %d MiB; at most %d MiB)", verifier.DefaultMaxLog>>20, verifier.MaxLogLimit>>20))
}

// limits are the verifier's bounds the flags give.
func (r *remoteFlags) limits() verifier.Limits { return verifier.Limits{MaxLog: r.maxLog} }

var errDialUsage = errors.New("usage")

// connect dials the agent named by the flags for command cmd. When that
// fails it reports why on stderr and returns ok false with the exit code:
// exitUsage for a flag error, failed otherwise.
func (r *remoteFlags) connect(stderr io.Writer, cmd string, failed int) (_ *grpc.ClientConn, code int, ok bool) {
	conn, err := dialRemote(r)
	switch {
	case errors.Is(err, errDialUsage):
		return nil, usageError(stderr, cmd)("%v", err), false
	case err != nil:
		fmt.Fprintf(stderr, "bpfattest %s: %v\n", cmd, err)
		return nil, failed, false
	}
	return conn, 0, true
}

// dialRemote connects to an agent's remote API over TLS 1.3, or without TLS
// to a loopback address when --insecure-loopback is given.
func dialRemote(r *remoteFlags) (*grpc.ClientConn, error) {
	if r.agent == "" {
		return nil, fmt.Errorf("%w: --agent is required", errDialUsage)
	}
	if r.maxLog < 0 || r.maxLog > verifier.MaxLogLimit {
		return nil, fmt.Errorf("%w: --max-log %d: want 0 to %d", errDialUsage, r.maxLog, verifier.MaxLogLimit)
	}
	var creds credentials.TransportCredentials
	if r.insecureLoopback {
		if r.ca != "" || r.cert != "" || r.key != "" {
			return nil, fmt.Errorf("%w: --insecure-loopback excludes --ca, --cert and --key", errDialUsage)
		}
		if err := service.CheckLoopback(r.agent); err != nil {
			return nil, fmt.Errorf("%w: --insecure-loopback: %v", errDialUsage, err)
		}
		creds = insecure.NewCredentials()
	} else {
		cfg, err := r.tlsConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient("passthrough:///"+r.agent,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(r.limits().RecvLimit())),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", r.agent, err)
	}
	return conn, nil
}

func (r *remoteFlags) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: r.serverName}
	if r.ca != "" {
		pem, err := os.ReadFile(r.ca)
		if err != nil {
			return nil, fmt.Errorf("%w: --ca: %v", errDialUsage, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: --ca %s: no PEM certificate", errDialUsage, r.ca)
		}
		cfg.RootCAs = pool
	}
	switch {
	case r.cert != "" && r.key != "":
		c, err := tls.LoadX509KeyPair(r.cert, r.key)
		if err != nil {
			return nil, fmt.Errorf("%w: --cert/--key: %v", errDialUsage, err)
		}
		cfg.Certificates = []tls.Certificate{c}
	case r.cert != "" || r.key != "":
		return nil, fmt.Errorf("%w: --cert and --key go together", errDialUsage)
	}
	return cfg, nil
}
