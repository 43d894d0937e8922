package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/service"
)

// shutdownGrace bounds how long running RPCs may finish after a signal.
const shutdownGrace = 10 * time.Second

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
func serve(ctx context.Context, cfg config, stderr io.Writer) (err error) {
	logger, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	gid, err := groupID(cfg.LocalGroup)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		tlsCfg, err = service.ServerTLS(service.TLSOptions{
			CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey,
			ClientCAFile: cfg.ClientCA, ClientAllow: cfg.ClientAllow,
		})
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
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
		MaxQuoteLog:      cfg.MaxQuoteLog,
		FirmwareLog:      cfg.FirmwareLog,
		BootPCRs:         bootPCRs,
		Logger:           logger,
	}
	if err := acfg.Validate(); err != nil {
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
	local, err := service.ListenUnix(cfg.LocalSocket, gid)
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
	}

	a, err := agent.New(ctx, acfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer func() {
		if cerr := a.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("agent/close: %w", cerr))
		}
	}()

	srv := service.New(a, service.Options{
		LocalGroup:      gid,
		MaxArtifactSize: cfg.MaxArtifactSize,
		QuoteRate:       cfg.QuoteRate,
		QuoteBurst:      cfg.QuoteBurst,
		MaxRemoteConns:  cfg.MaxRemoteConns,
		MaxConnsPerHost: cfg.MaxConnsPerHost,
		TLS:             tlsCfg,
		Logger:          logger,
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
	var hs *http.Server
	if metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.Metrics())
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := hs.Serve(metrics); !errors.Is(err, http.ErrServerClosed) {
				fail("metrics", err)
			}
		})
	}
	attrs := []any{"local_socket", cfg.LocalSocket, "agent", acfg}
	if remote != nil {
		attrs = append(attrs, "listen", remote.Addr().String(), "tls", tlsCfg != nil)
	}
	if metrics != nil {
		attrs = append(attrs, "metrics", metrics.Addr().String())
	}
	logger.Info("serving", attrs...)

	<-ctx.Done()
	logger.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	srv.Shutdown(sctx)
	if hs != nil {
		if err := hs.Shutdown(sctx); err != nil {
			fail("metrics/shutdown", err)
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(errs...)
}
