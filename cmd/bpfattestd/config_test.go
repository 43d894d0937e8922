package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestParseConfig proves the config file is read, flags override it, and a
// list flag replaces the file's list rather than appending to it.
func TestParseConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bpfattestd.json")
	if err := os.WriteFile(file, []byte(`{
		"tpm": "/dev/tpmrm0", "state_dir": "/var/lib/x", "pcr": 13,
		"trust": ["/etc/a", "/etc/b"], "client_allow": ["aa"],
		"observer_interval": "30s", "allow_unsigned": true
	}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"--config", file, "--pcr", "12", "--trust", "/etc/c"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TPM != "/dev/tpmrm0" || cfg.StateDir != "/var/lib/x" || !cfg.AllowUnsigned {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.PCR != 12 {
		t.Errorf("pcr %d, want the flag's 12", cfg.PCR)
	}
	if !slices.Equal(cfg.Trust, []string{"/etc/c"}) {
		t.Errorf("trust %v, want the flag's list only", cfg.Trust)
	}
	if !slices.Equal(cfg.ClientAllow, []string{"aa"}) {
		t.Errorf("client_allow %v, want the file's", cfg.ClientAllow)
	}
	if time.Duration(cfg.ObserverInterval) != 30*time.Second {
		t.Errorf("observer interval %v", time.Duration(cfg.ObserverInterval))
	}
	cfg, err = parseConfig(nil, io.Discard)
	if err != nil || cfg.TPM != "" || cfg.PCR != 14 || cfg.LocalSocket != defaultSocket {
		t.Errorf("defaults %+v, %v", cfg, err)
	}
}

// TestTPMRequired: the daemon names no TPM by default; without --tpm it
// refuses to start, saying so, rather than run on the simulator silently.
func TestTPMRequired(t *testing.T) {
	var stderr strings.Builder
	code := run(t.Context(), []string{"--state-dir", t.TempDir(), "--local-socket", filepath.Join(t.TempDir(), "s.sock")}, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "no TPM named") {
		t.Errorf("exit %d, stderr %q: want a usage error naming the missing TPM", code, stderr.String())
	}
}

func TestParseConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, args := range map[string][]string{
		"unknown field":  {"--config", write("u.json", `{"tmp": "sim"}`)},
		"trailing data":  {"--config", write("t.json", `{} {}`)},
		"bad duration":   {"--config", write("d.json", `{"quote_window": 5}`)},
		"missing file":   {"--config", filepath.Join(dir, "none.json")},
		"positional arg": {"extra"},
	} {
		if _, err := parseConfig(args, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%s: %v, want a usage error", name, err)
		}
	}
	if _, err := parseConfig([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// TestDeployConfig proves the example configuration shipped with the
// systemd unit is one the daemon accepts.
func TestDeployConfig(t *testing.T) {
	file := filepath.Join(testutil.RepoRoot(t), "deploy", "systemd", "bpfattestd.json")
	cfg, err := parseConfig([]string{"--config", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	if cfg.ClientCA == "" || cfg.TLSCert == "" || cfg.InsecureLoopback {
		t.Errorf("example config does not use mutual TLS: %+v", cfg)
	}
}

// TestBootFlags reads --firmware-log and --boot-pcrs, from the file and
// the command line, and the PCR lists they take.
func TestBootFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bpfattestd.json")
	if err := os.WriteFile(file, []byte(`{"firmware_log": "/boot/log", "boot_pcrs": "0-7"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"--config", file, "--boot-pcrs", "0-4,7"}, io.Discard)
	if err != nil || cfg.FirmwareLog != "/boot/log" || cfg.BootPCRs != "0-4,7" {
		t.Errorf("config %q %q, %v", cfg.FirmwareLog, cfg.BootPCRs, err)
	}
	for in, want := range map[string][]int{
		"":        nil,
		"none":    {},
		"0-9":     {0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		"9,0-2,7": {0, 1, 2, 7, 9},
		"23":      {23},
	} {
		got, err := parsePCRList(in)
		if err != nil || !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"24", "-1", "0-", "-3", "3-1", "1,1", "0-2,2", "a", "01", " 1", "1,,2", ",", "none,1"} {
		if got, err := parsePCRList(in); err == nil {
			t.Errorf("%q accepted: %v", in, got)
		}
	}
}

// FuzzParsePCRList: no panic, and an accepted list is ascending, unique,
// within 0..23.
func FuzzParsePCRList(f *testing.F) {
	for _, s := range []string{"0-9", "none", "1,3-5", "23", "9-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parsePCRList(s)
		if err != nil {
			return
		}
		for i, p := range got {
			if p < 0 || p > 23 || (i > 0 && p <= got[i-1]) {
				t.Fatalf("%q: %v", s, got)
			}
		}
	})
}

// TestMemoryLimit: --memory-limit wins, a negative one sets none, and
// without it GOMEMLIMIT (already read by the runtime) is left alone; with
// neither the default applies.
func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		flag int64
		env  string
		want int64
	}{
		{0, "", defaultMemoryLimit},
		{0, "200MiB", 0},
		{64 << 20, "200MiB", 64 << 20},
		{-1, "", -1},
	} {
		if got := memoryLimit(tc.flag, tc.env); got != tc.want {
			t.Errorf("memoryLimit(%d, %q) = %d, want %d", tc.flag, tc.env, got, tc.want)
		}
	}
}
