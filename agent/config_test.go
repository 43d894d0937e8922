package agent_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/tpm"
)

// TestConfigValidate checks the defaults and the refusals, without opening
// anything.
func TestConfigValidate(t *testing.T) {
	ok := agent.Config{StateDir: "/var/lib/bpfattest", TPM: "/dev/tpmrm0"}
	for _, c := range []struct {
		name string
		edit func(*agent.Config)
		ok   bool
	}{
		{"defaults", func(*agent.Config) {}, true},
		{"pcr 14", func(c *agent.Config) { c.PCR = 14 }, true},
		{"rsa", func(c *agent.Config) { c.AKAlgorithm = "rsa" }, true},
		{"window", func(c *agent.Config) { c.QuoteWindow = time.Millisecond }, true},
		{"no observer", func(c *agent.Config) { c.ObserverInterval = -1 }, true},
		{"sim", func(c *agent.Config) { c.TPM = "sim" }, true},
		{"sweeps only", func(c *agent.Config) { c.Observer = agent.ObserveSweep }, true},
		{"events required", func(c *agent.Config) { c.Observer = agent.ObserveEvents; c.EventRingPages = 8 }, true},
		{"no state dir", func(c *agent.Config) { c.StateDir = "" }, false},
		{"no tpm named", func(c *agent.Config) { c.TPM = "" }, false},
		{"other observer", func(c *agent.Config) { c.Observer = "psychic" }, false},
		{"ring of 3 pages", func(c *agent.Config) { c.EventRingPages = 3 }, false},
		{"pcr 16", func(c *agent.Config) { c.PCR = 16 }, false},
		{"pcr 23", func(c *agent.Config) { c.PCR = 23 }, false},
		{"pcr 24", func(c *agent.Config) { c.PCR = 24 }, false},
		{"pcr -1", func(c *agent.Config) { c.PCR = -1 }, false},
		{"ak dsa", func(c *agent.Config) { c.AKAlgorithm = "dsa" }, false},
		{"negative window", func(c *agent.Config) { c.QuoteWindow = -time.Second }, false},
		{"quotes a tenth of the tpm", func(c *agent.Config) { c.QuoteTPMShare = 0.1 }, true},
		{"quotes back to back", func(c *agent.Config) { c.QuoteTPMShare = 1 }, true},
		{"quote share past 1", func(c *agent.Config) { c.QuoteTPMShare = 1.5 }, false},
		{"negative quote share", func(c *agent.Config) { c.QuoteTPMShare = -0.5 }, false},
		{"quote share NaN", func(c *agent.Config) { c.QuoteTPMShare = math.NaN() }, false},
		{"boot pcrs none", func(c *agent.Config) { c.BootPCRs = []int{} }, true},
		{"boot pcrs with the agent's", func(c *agent.Config) { c.BootPCRs = []int{0, 7, 14} }, true},
		{"boot pcr 24", func(c *agent.Config) { c.BootPCRs = []int{0, 24} }, false},
		{"boot pcr -1", func(c *agent.Config) { c.BootPCRs = []int{-1} }, false},
		{"simulator boot on the simulator", func(c *agent.Config) { c.TPM = "sim"; c.SimulatorBoot = func(*tpm.Device) error { return nil } }, true},
		{"simulator boot on swtpm", func(c *agent.Config) {
			c.TPM, c.SimulatorBoot = "swtpm:unix:/run/swtpm.sock", func(*tpm.Device) error { return nil }
		}, false},
		{"simulator boot on a device", func(c *agent.Config) {
			c.TPM, c.SimulatorBoot = "/dev/tpmrm0", func(*tpm.Device) error { return nil }
		}, false},
	} {
		cfg := ok
		c.edit(&cfg)
		err := cfg.Validate()
		if (err == nil) != c.ok || err != nil && !errors.Is(err, agent.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestNewRefusesBadTrust: an unreadable trust path stops New before the TPM
// or the log is touched.
func TestNewRefusesBadTrust(t *testing.T) {
	requireKernel(t)
	cfg := config(t)
	cfg.Trust = []string{"/nonexistent/cert.der"}
	if _, err := agent.New(t.Context(), cfg); !errors.Is(err, agent.ErrInvalid) {
		t.Errorf("New: %v, want ErrInvalid", err)
	}
}
