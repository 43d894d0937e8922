package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/service"
	"github.com/bpfattest/bpfattest/internal/sdnotify"
)

// shutdownGrace bounds how long running RPCs may finish after a signal.
const shutdownGrace = 10 * time.Second

// defaultTLSReloadInterval is how often the TLS files are checked for a
// change: well inside the renewal margins of cert-manager (a third of the
// lifetime) and SPIRE (half).
const defaultTLSReloadInterval = 10 * time.Second

func newLogger(cfg config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// serve opens the agent and its listeners and serves until ctx is done.
// defaultMemoryLimit is the Go runtime's soft memory limit unless
// --memory-limit or GOMEMLIMIT says otherwise: the collector works
// harder as the heap nears it. The budgets bound what peers make the agent
// hold; this keeps garbage from doubling it.
const defaultMemoryLimit = 96 << 20

// memoryLimit is the soft memory limit to set: the flag's when given (a
// negative flag: none), else none when GOMEMLIMIT is set (the runtime
// read it), else the default.
func memoryLimit(flag int64, env string) int64 {
	switch {
	case flag != 0:
		return flag
	case env != "":
		return 0
	}
	return defaultMemoryLimit
}

func serve(ctx context.Context, cfg config, stderr io.Writer) (err error) {
	logger, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	gid, err := groupID(cfg.LocalGroup)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if limit := memoryLimit(cfg.MemoryLimit, os.Getenv("GOMEMLIMIT")); limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	// SIGHUP reloads the TLS files; registered first, since its default
	// action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var (
		tlsCfg, metricsTLS *tls.Config
		reloaders          []*service.TLSReloader
	)
	if cfg.TLSCert != "" {
		r, err := service.NewTLSReloader(service.TLSOptions{
			CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey,
			ClientCAFile: cfg.ClientCA, ClientAllow: cfg.ClientAllow,
		}, logger.With("tls", "remote"))
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		tlsCfg, reloaders = r.Config(), append(reloaders, r)
	}
	if cfg.MetricsTLSCert != "" {
		r, err := service.NewTLSReloader(service.TLSOptions{
			CertFile: cfg.MetricsTLSCert, KeyFile: cfg.MetricsTLSKey, ClientCAFile: cfg.MetricsClientCA,
			NextProtos: []string{"h2", "http/1.1"},
		}, logger.With("tls", "metrics"))
		if err != nil {
			return fmt.Errorf("%w: metrics: %v", errUsage, err)
		}
		metricsTLS, reloaders = r.Config(), append(reloaders, r)
	}
	if cfg.Listen != "" && tlsCfg == nil {
		if err := service.CheckLoopback(cfg.Listen); err != nil {
			return fmt.Errorf("%w: --insecure-loopback: %v", errUsage, err)
		}
	}
	bootPCRs, err := parsePCRList(cfg.BootPCRs)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	acfg := agent.Config{
		TPM:              cfg.TPM,
		StateDir:         cfg.StateDir,
		PCR:              cfg.PCR,
		Trust:            cfg.Trust,
		AllowUnsigned:    cfg.AllowUnsigned,
		ObserverInterval: time.Duration(cfg.ObserverInterval),
		Observer:         cfg.Observer,
		EventRingPages:   cfg.EventRingPages,
		EventWindow:      time.Duration(cfg.EventWindow),
		AKAlgorithm:      cfg.AKAlgorithm,
		QuoteWindow:      time.Duration(cfg.QuoteWindow),
		QuoteTPMShare:    cfg.QuoteTPMShare,
		MaxQuoteLog:      cfg.MaxQuoteLog,
		RefusalLogRate:   cfg.RefusalLogRate,
		RefusalLogBurst:  cfg.RefusalLogBurst,
		FirmwareLog:      cfg.FirmwareLog,
		BootPCRs:         bootPCRs,
		Logger:           logger,
	}
	if err := acfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	notifier, err := sdnotify.NewNotifier(os.Getenv)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	watchdog, err := sdnotify.WatchdogInterval(os.Getenv)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	// Listeners first: a daemon that cannot serve fails before it
	// records anything.
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	local, activated, err := localListener(cfg, gid)
	if err != nil {
		return err
	}
	listeners = append(listeners, local)
	var remote, metrics net.Listener
	if cfg.Listen != "" {
		if remote, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("remote api/listen: %w", err)
		}
		listeners = append(listeners, remote)
	}
	if cfg.Metrics != "" {
		if metrics, err = net.Listen("tcp", cfg.Metrics); err != nil {
			return fmt.Errorf("metrics/listen: %w", err)
		}
		listeners = append(listeners, metrics)
		if metricsTLS == nil && service.CheckLoopback(cfg.Metrics) != nil {
			logger.Warn("metrics served without TLS on a non-loopback address: anyone who reaches it can read them", "metrics", cfg.Metrics)
		}
	}
	if cfg.QuoteRate != 0 || cfg.QuoteBurst != 0 {
		logger.Warn("quote_rate and quote_burst are ignored: quotes are no longer limited per client; the agent bounds the TPM time of all quotes together (--quote-tpm-share)",
			"quote_rate", cfg.QuoteRate, "quote_burst", cfg.QuoteBurst)
	}
	var health net.Listener
	if cfg.Health != "" {
		if health, err = net.Listen("tcp", cfg.Health); err != nil {
			return fmt.Errorf("health/listen: %w", err)
		}
		listeners = append(listeners, health)
	}

	a, err := agent.New(ctx, acfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// Start-up read the whole log (reconciliation, the rebuilt program
	// set) a megabyte at a time; none of it is live now. Give those pages
	// back at once rather than as the runtime's scavenger gets to them,
	// so the resident size follows the live heap from the start.
	debug.FreeOSMemory()
	defer func() {
		if cerr := a.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("agent/close: %w", cerr))
		}
	}()

	// A client may be answered one quote of the largest log a quote
	// carries, unless told otherwise.
	quoteBytesPerPeer := cfg.MaxQuoteBytesPerPeer
	if quoteBytesPerPeer <= 0 {
		quoteBytesPerPeer = cmp.Or(cfg.MaxQuoteLog, agent.DefaultMaxQuoteLog)
	}
	srv := service.New(a, service.Options{
		LocalGroup:      gid,
		MaxArtifactSize: cfg.MaxArtifactSize,
		MaxRemoteConns:  cfg.MaxRemoteConns,
		MaxConnsPerHost: cfg.MaxConnsPerHost,

		HandshakeTimeout:      time.Duration(cfg.HandshakeTimeout),
		RemoteIdleTimeout:     time.Duration(cfg.RemoteIdleTimeout),
		StallTimeout:          time.Duration(cfg.StallTimeout),
		RefusalDelay:          time.Duration(cfg.RefusalDelay),
		MaxRemoteCalls:        cfg.MaxRemoteCalls,
		MaxRemoteCallsPerPeer: cfg.MaxRemoteCallsPerPeer,
		MaxQuoteCalls:         cfg.MaxQuoteCalls,
		MaxQuoteCallsPerPeer:  cfg.MaxQuoteCallsPerPeer,
		ActivateRate:          cfg.ActivateRate,
		ActivateBurst:         cfg.ActivateBurst,
		MaxEventsStreams:      cfg.MaxEventsStreams,
		MaxEventsPerPeer:      cfg.MaxEventsPerPeer,
		MaxQuoteBytes:         cfg.MaxQuoteBytes,
		MaxQuoteBytesPerPeer:  quoteBytesPerPeer,
		IdentityRate:          cfg.IdentityRate,
		IdentityBurst:         cfg.IdentityBurst,
		EnrolRate:             cfg.EnrolRate,
		EnrolBurst:            cfg.EnrolBurst,
		EventsRate:            cfg.EventsRate,
		EventsBurst:           cfg.EventsBurst,
		EventsRateTotal:       cfg.EventsRateTotal,
		EventsBurstTotal:      cfg.EventsBurstTotal,
		MaxLocalCalls:         cfg.MaxLocalCalls,
		MaxLocalCallsPerPeer:  cfg.MaxLocalCallsPerPeer,
		MaxLocalConns:         cfg.MaxLocalConns,
		MaxLocalConnsPerPeer:  cfg.MaxLocalConnsPerPeer,
		MaxLoadBytes:          cfg.MaxLoadBytes,
		MaxLoadBytesPerPeer:   cfg.MaxLoadBytesPerPeer,
		LoadRate:              cfg.LoadRate,
		LoadBurst:             cfg.LoadBurst,
		LoadRateTotal:         cfg.LoadRateTotal,
		LoadBurstTotal:        cfg.LoadBurstTotal,
		LoadReceiveTimeout:    time.Duration(cfg.LoadReceiveTimeout),

		TLS:    tlsCfg,
		Logger: logger,
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error // guarded by mu
	)
	fail := func(what string, err error) {
		if err == nil {
			return
		}
		mu.Lock()
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
		mu.Unlock()
		cancel()
	}
	wg.Go(func() {
		if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			fail("agent", err)
		}
	})
	wg.Go(func() { fail("local api", srv.ServeLocal(local)) })
	if remote != nil {
		wg.Go(func() { fail("remote api", srv.ServeRemote(remote)) })
	}
	reloads := make([]chan struct{}, len(reloaders))
	for i := range reloads {
		reloads[i] = make(chan struct{}, 1)
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if len(reloads) == 0 {
					logger.Info("SIGHUP: nothing to reload (no TLS)")
				}
				for _, ch := range reloads {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
		}
	})
	interval := time.Duration(cfg.TLSReloadInterval)
	if interval == 0 {
		interval = defaultTLSReloadInterval
	}
	for i, r := range reloaders {
		wg.Go(func() { r.Watch(ctx, interval, reloads[i]) })
	}
	var servers []*http.Server
	serveHTTP := func(what string, ln net.Listener, h http.Handler, tc *tls.Config) {
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tc,
			ErrorLog: slog.NewLogLogger(logger.With("server", what).Handler(), slog.LevelWarn)}
		servers = append(servers, hs)
		wg.Go(func() {
			var err error
			if tc != nil {
				err = hs.ServeTLS(ln, "", "")
			} else {
				err = hs.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				fail(what, err)
			}
		})
	}
	if metrics != nil {
		serveHTTP("metrics", metrics, srv.Handler(), metricsTLS)
	}
	if health != nil {
		serveHTTP("health", health, srv.HealthHandler(), nil)
	}
	attrs := []any{"local_socket", local.Addr().String(), "socket_activated", activated, "agent", acfg}
	if remote != nil {
		attrs = append(attrs, "listen", remote.Addr().String(), "tls", tlsCfg != nil)
	}
	if metrics != nil {
		attrs = append(attrs, "metrics", metrics.Addr().String(), "metrics_tls", metricsTLS != nil)
	}
	if health != nil {
		attrs = append(attrs, "health", health.Addr().String())
	}
	logger.Info("serving", attrs...)
	// The TPM is open, the log reconciled and every listener bound (and
	// served): loaders ordered after this unit find the socket answering.
	if err := notifier.Notify(sdnotify.Ready + "\nSTATUS=serving"); err != nil {
		logger.Warn("service manager notification", "err", err)
	}
	if watchdog > 0 && notifier.Enabled() {
		wg.Go(func() { pingWatchdog(ctx, a, notifier, watchdog, logger) })
	}

	<-ctx.Done()
	logger.Info("shutting down")
	if err := notifier.Notify(sdnotify.Stopping + "\nSTATUS=shutting down"); err != nil {
		logger.Warn("service manager notification", "err", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	srv.Shutdown(sctx)
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil {
			fail("http/shutdown", err)
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(errs...)
}

// localListener returns the local API's socket: the one the service
// manager passed (socket activation, named "local" by the socket unit's
// FileDescriptorName=, or the only one passed), or else a new socket at
// --local-socket. An inherited socket keeps the owner, group and mode the
// socket unit gave it; the peer-credential check applies to it as to any.
func localListener(cfg config, gid int) (_ net.Listener, activated bool, err error) {
	inherited, err := sdnotify.Listeners(os.Getenv, os.Unsetenv)
	if err != nil {
		return nil, false, fmt.Errorf("%w: socket activation: %v", errUsage, err)
	}
	if len(inherited) == 0 {
		ln, err := service.ListenUnix(cfg.LocalSocket, gid)
		return ln, false, err
	}
	closeAll := func() {
		for _, lns := range inherited {
			for _, ln := range lns {
				ln.Close()
			}
		}
	}
	var ln net.Listener
	switch lns := inherited["local"]; {
	case len(lns) == 1 && len(inherited) == 1:
		ln = lns[0]
	case len(inherited) == 1 && len(lns) == 0:
		for _, only := range inherited {
			if len(only) == 1 {
				ln = only[0]
			}
		}
	}
	if ln == nil {
		closeAll()
		names := make([]string, 0, len(inherited))
		for n := range inherited {
			names = append(names, n)
		}
		return nil, false, fmt.Errorf("%w: socket activation: want one socket (FileDescriptorName=local), got %v", errUsage, names)
	}
	if _, ok := ln.(*net.UnixListener); !ok {
		closeAll()
		return nil, false, fmt.Errorf("%w: socket activation: the local API needs a unix stream socket, got %s %s", errUsage, ln.Addr().Network(), ln.Addr())
	}
	return ln, true, nil
}

// pingWatchdog tells the service manager the daemon is alive every
// interval, as long as the agent is (Agent.Alive: its pipeline is not
// wedged). A missed ping is logged; systemd restarts the daemon after
// WatchdogSec= without one.
func pingWatchdog(ctx context.Context, a *agent.Agent, n *sdnotify.Notifier, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, interval)
		err := a.Alive(actx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			logger.Error("watchdog: the agent is not alive; no ping", "err", err)
		default:
			if err := n.Notify(sdnotify.Watchdog); err != nil {
				logger.Warn("watchdog ping", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
