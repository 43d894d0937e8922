package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/api"
	"github.com/bpfattest/bpfattest/fleet/dashboard"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/postgres"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/verifier"
)

// Size limits of the files the service reads.
const (
	maxTLSFile    = 1 << 20
	maxSecretFile = 4 << 10
	// maxEvidenceSize bounds an agent's answer (the log slice dominates).
	maxEvidenceSize = 256 << 20
)

const shutdownGrace = 10 * time.Second

func newLogger(c *config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func openStore(ctx context.Context, c *config) (store.Store, string, error) {
	if c.db != "" {
		s, err := postgres.Open(ctx, c.db)
		return s, "postgres", err
	}
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(c.stateDir, "fleet.db")
	s, err := sqlite.Open(ctx, path)
	return s, "sqlite " + path, err
}

func serve(ctx context.Context, c *config, stderr io.Writer) (err error) {
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	role, err := api.ParseRole(c.loopbackRole)
	if err != nil {
		return fmt.Errorf("%w: --loopback-role: %v", errUsage, err)
	}
	roles := api.Roles{AdminOU: c.adminOU, ReaderOU: c.readerOU, Loopback: role}
	for _, l := range []struct {
		in  []string
		out *[]string
	}{{c.adminCerts, &roles.Admins}, {c.readerCerts, &roles.Readers}} {
		for _, s := range l.in {
			fp, err := api.NormalizeFingerprint(s)
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			*l.out = append(*l.out, fp)
		}
	}
	var secret []byte
	if c.webhookSecretFile != "" {
		b, err := boundedfile.ReadFile(c.webhookSecretFile, maxSecretFile)
		if err != nil {
			return fmt.Errorf("%w: --webhook-secret-file: %v", errUsage, err)
		}
		secret = []byte(strings.TrimSpace(string(b)))
	}
	var policyBody []byte
	if c.policy != "" {
		if policyBody, err = boundedfile.ReadFile(c.policy, fleet.MaxPolicySize); err != nil {
			return fmt.Errorf("%w: --policy: %v", errUsage, err)
		}
	}
	var specs []fleet.AgentSpec
	if c.inventory != "" {
		targets, err := verifier.ParseInventory(c.inventory, c.inventoryStateDir)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if specs, err = fleet.SpecsFromInventory(targets, ""); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	dial, err := agentDialer(c)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var apiTLS, pushTLS *tls.Config
	if c.tlsCert != "" {
		if apiTLS, err = serverTLS(c.tlsCert, c.tlsKey, c.clientCA); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if c.pushListen != "" {
			if pushTLS, err = serverTLS(c.tlsCert, c.tlsKey, c.pushCA); err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
		}
	}

	// Listeners before the store: a node that cannot serve fails first.
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	listen := func(what, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s/listen: %w", what, err)
		}
		listeners = append(listeners, ln)
		return ln, nil
	}
	apiLn, err := listen("api", c.listen)
	if err != nil {
		return err
	}
	var pushLn, metricsLn, dashLn net.Listener
	if c.pushListen != "" {
		if pushLn, err = listen("push", c.pushListen); err != nil {
			return err
		}
	}
	if c.metrics != "" {
		if metricsLn, err = listen("metrics", c.metrics); err != nil {
			return err
		}
	}
	if c.dashboardListen != "" {
		if dashLn, err = listen("dashboard", c.dashboardListen); err != nil {
			return err
		}
	}

	st, where, err := openStore(ctx, c)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("store/close: %w", cerr))
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := fleet.New(fleet.Config{
		Store: st, Replica: c.replica, Interval: c.interval, Jitter: c.jitter, Timeout: c.timeout, Lease: c.lease,
		Concurrency: c.concurrency, MaxBackoff: c.maxBackoff, PushGrace: c.pushGrace, Dial: dial, TOFU: c.tofu,
		Webhooks: c.webhooks, WebhookSecret: secret, RoundRetention: c.roundRetention, TransitionRetention: c.transitionRetention,
		Registerer: reg, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if policyBody != nil {
		v, err := svc.PutPolicy(ctx, fleet.DefaultPolicyName, policyBody)
		if err != nil {
			return fmt.Errorf("%w: --policy: %v", errUsage, err)
		}
		log.Info("policy", "name", fleet.DefaultPolicyName, "version", v)
	}
	if len(specs) > 0 {
		if err := svc.Register(ctx, specs); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		log.Info("inventory registered", "agents", len(specs))
	}
	dash, err := dashboard.New(svc, log)
	if err != nil {
		return err
	}
	handler := api.NewHandler(svc, api.Options{Roles: roles, Dashboard: dash, Logger: log})
	apiSrv := &http.Server{Handler: handler, TLSConfig: apiTLS, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	if apiTLS == nil {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		apiSrv.Protocols = &p
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error // guarded by mu
	)
	fail := func(what string, err error) {
		if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
			return
		}
		mu.Lock()
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
		mu.Unlock()
		cancel()
	}
	wg.Go(func() { fail("service", svc.Run(ctx)) })
	wg.Go(func() {
		if apiTLS != nil {
			fail("api", apiSrv.ServeTLS(apiLn, "", ""))
		} else {
			fail("api", apiSrv.Serve(apiLn))
		}
	})
	var pushSrv *grpc.Server
	if pushLn != nil {
		pushSrv = api.NewPushServer(svc, credentials.NewTLS(pushTLS))
		wg.Go(func() { fail("push", api.ServePush(pushSrv, pushLn)) })
	}
	var metricsSrv *http.Server
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { fail("metrics", metricsSrv.Serve(metricsLn)) })
	}
	var dashSrv *http.Server
	if dashLn != nil {
		dashSrv = &http.Server{Handler: dash, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { fail("dashboard", dashSrv.Serve(dashLn)) })
	}
	attrs := []any{"store", where, "listen", apiLn.Addr().String(), "tls", apiTLS != nil, "interval", c.interval,
		"replica", svc.Replica()}
	if pushLn != nil {
		attrs = append(attrs, "push", pushLn.Addr().String())
	}
	if metricsLn != nil {
		attrs = append(attrs, "metrics", metricsLn.Addr().String())
	}
	if dashLn != nil {
		attrs = append(attrs, "dashboard", dashLn.Addr().String())
	}
	log.Info("serving", attrs...)

	<-ctx.Done()
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	fail("api/shutdown", apiSrv.Shutdown(sctx))
	handler.Stop()
	if pushSrv != nil {
		pushSrv.GracefulStop()
	}
	if metricsSrv != nil {
		fail("metrics/shutdown", metricsSrv.Shutdown(sctx))
	}
	if dashSrv != nil {
		fail("dashboard/shutdown", dashSrv.Shutdown(sctx))
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(errs...)
}

// serverTLS is the TLS configuration of the API and of the push listener:
// TLS 1.3, a client certificate required, chaining to clientCA when one is
// given (then every client's must; the API's Roles and the push agents'
// registered SHA-256 decide the rest).
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	certPEM, err := boundedfile.ReadFile(certFile, maxTLSFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err := boundedfile.ReadFile(keyFile, maxTLSFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}
	if clientCA != "" {
		pool, err := certPool(clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
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

// agentDialer connects to pull agents: TLS 1.3 with the agent CA (or the
// system roots), the agent's server name and, when registered, a pin of
// its certificate's SHA-256; mutual TLS with --agent-cert; or no TLS to
// loopback agents with --agent-insecure-loopback (those registered without
// a server name or certificate pin, which ask for TLS).
func agentDialer(c *config) (func(a *store.Agent) (*grpc.ClientConn, error), error) {
	base := &tls.Config{MinVersion: tls.VersionTLS13}
	if c.agentCA != "" {
		p, err := certPool(c.agentCA)
		if err != nil {
			return nil, fmt.Errorf("--agent-ca: %w", err)
		}
		base.RootCAs = p
	}
	if c.agentCert != "" {
		cert, err := tls.LoadX509KeyPair(c.agentCert, c.agentKey)
		if err != nil {
			return nil, fmt.Errorf("--agent-cert/--agent-key: %w", err)
		}
		base.Certificates = []tls.Certificate{cert}
	}
	return func(a *store.Agent) (*grpc.ClientConn, error) {
		var creds credentials.TransportCredentials
		if c.agentInsecureLoopback && a.ServerName == "" && a.CertSHA256 == "" && checkLoopback(a.Address) == nil {
			creds = insecure.NewCredentials()
		} else {
			cfg := base.Clone()
			cfg.ServerName = a.ServerName
			if a.CertSHA256 != "" {
				want, err := hex.DecodeString(a.CertSHA256)
				if err != nil {
					return nil, err
				}
				cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) == 0 || subtle.ConstantTimeCompare([]byte(api.Fingerprint(raw[0])), []byte(hex.EncodeToString(want))) != 1 {
						return errors.New("the agent's certificate is not the pinned one")
					}
					return nil
				}
			}
			creds = credentials.NewTLS(cfg)
		}
		return grpc.NewClient("passthrough:///"+a.Address,
			grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxEvidenceSize)),
			// Many mostly idle connections: small buffers.
			grpc.WithReadBufferSize(16<<10),
			grpc.WithWriteBufferSize(16<<10),
		)
	}, nil
}
