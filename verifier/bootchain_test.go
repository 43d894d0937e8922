package verifier_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/service"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// The acceptance tests of the boot chain: go-attestation's real firmware
// logs (read from the module cache, not copied here) are replayed into the
// PCRs of the simulator and of swtpm before a real agent starts; the
// agent serves a copy of the log (--firmware-log) and quotes the boot PCRs
// with its own over its remote API; verifier.Check verifies.

const (
	logUbuntu      = "ubuntu_2104_shielded_vm_no_secure_boot_eventlog" // shim + GRUB, PCR 14 events
	logCoreOS      = "coreos_36_shielded_vm_no_secure_boot_eventlog"   // shim + GRUB, PCR 14 events
	logSBCert      = "sb_cert_eventlog"                                // Secure Boot on, shim
	logCryptoAgile = "crypto_agile_eventlog"                           // SHA-256 only, Boot Guard
)

// host is an agent on a TPM into which a firmware log was replayed.
type host struct {
	client *recordingClient
	agent  *agent.Agent
}

// startHost replays replay into a fresh TPM of target (the simulator
// through the agent's simulator boot hook, swtpm before the agent opens
// it), starts an agent (without kernel access: the boot chain does not
// depend on it) that serves served from a file, and serves its remote API
// on loopback.
func startHost(t *testing.T, target string, replay, served []byte) *host {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := agent.Config{TPM: "sim", StateDir: t.TempDir(), ObserverInterval: -1, NoKernel: true, FirmwareLog: agent.NoFirmwareLog}
	if served != nil {
		cfg.FirmwareLog = filepath.Join(t.TempDir(), "binary_bios_measurements")
		if err := os.WriteFile(cfg.FirmwareLog, served, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	switch target {
	case "sim":
		cfg.SimulatorBoot = func(d *tpm.Device) error {
			tpmtest.ReplayFirmwareLog(t, d, replay)
			return nil
		}
	case "swtpm":
		sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
		d := tpmtest.Open(t, sw.Spec())
		tpmtest.ReplayFirmwareLog(t, d, replay)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		cfg.TPM = sw.Spec()
	}
	a, err := agent.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	s := service.New(a, service.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeRemote(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &host{client: &recordingClient{AttestationServiceClient: pb.NewAttestationServiceClient(conn)}, agent: a}
}

// recordingClient records whether each quote request asked for the
// firmware log.
type recordingClient struct {
	pb.AttestationServiceClient
	mu    sync.Mutex
	asked []bool
}

func (c *recordingClient) Quote(ctx context.Context, in *pb.QuoteRequest, opts ...grpc.CallOption) (*pb.Evidence, error) {
	c.mu.Lock()
	c.asked = append(c.asked, in.GetIncludeFirmwareLog())
	c.mu.Unlock()
	return c.AttestationServiceClient.Quote(ctx, in, opts...)
}

func (c *recordingClient) lastAsked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asked[len(c.asked)-1]
}

// expected is what the test's own log reader (tpmtest, independent of
// go-attestation) says a log shows.
type expected struct {
	pcr14       []byte   // sha256 start of PCR 14, nil without events
	unlogged    []string // quoted banks (all but SHA-1 of the TPMs' four) the log does not carry
	sbKnown     bool     // the log has a one-byte SecureBoot variable
	secureBoot  bool
	kernel      string // sha256 hex of GRUB's kernel file, else of the last PCR 4 boot application
	kernelGrub  bool
	cmdlineHead string
}

func expect(t *testing.T, b []byte) expected {
	t.Helper()
	l, err := tpmtest.ParseFirmwareLog(b)
	if err != nil {
		t.Fatal(err)
	}
	var e expected
	if len(l.Measured(14)) > 0 {
		e.pcr14 = l.Replay(14, crypto.SHA256)
	}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if !slices.Contains(l.Banks, h) {
			e.unlogged = append(e.unlogged, strings.ToLower(strings.ReplaceAll(h.String(), "-", "")))
		}
	}
	sb, ok := secureBootVar(l)
	e.sbKnown, e.secureBoot = ok, sb == 1
	cmdline, cmdPos := "", -1
	for i, ev := range l.Events {
		if ev.PCR == 8 && ev.Type == tpmtest.EVIPL {
			if s, ok := strings.CutPrefix(string(ev.Data), "kernel_cmdline: "); ok {
				cmdline, cmdPos = strings.TrimSuffix(s, "\x00"), i
			}
		}
	}
	if cmdline != "" {
		path := strings.Fields(cmdline)[0]
		for i := cmdPos - 1; i >= 0; i-- {
			if ev := l.Events[i]; ev.PCR == 9 && strings.TrimSuffix(string(ev.Data), "\x00") == path {
				e.kernel, e.kernelGrub, e.cmdlineHead = hex.EncodeToString(ev.Digests[crypto.SHA256]), true, path
				break
			}
		}
		return e
	}
	apps := l.Measured(4)
	for i := len(apps) - 1; i >= 0; i-- {
		if apps[i].Type == tpmtest.EVEFIBootServicesApp {
			e.kernel = hex.EncodeToString(apps[i].Digests[crypto.SHA256])
			break
		}
	}
	return e
}

// secureBootVar reads the SecureBoot variable's one-byte value from the
// log's PCR 7 EV_EFI_VARIABLE_DRIVER_CONFIG event (UEFI_VARIABLE_DATA:
// GUID, name length, data length, UTF-16 name, data); false when the log
// has none (the Boot Guard log measures it empty: its state is unknown).
func secureBootVar(l *tpmtest.FirmwareLog) (byte, bool) {
	name := []byte{'S', 0, 'e', 0, 'c', 0, 'u', 0, 'r', 0, 'e', 0, 'B', 0, 'o', 0, 'o', 0, 't', 0}
	for _, e := range l.Events {
		if e.PCR == 7 && e.Type == tpmtest.EVEFIVariableDriverConfig && len(e.Data) == 53 &&
			binary.LittleEndian.Uint64(e.Data[16:]) == 10 && binary.LittleEndian.Uint64(e.Data[24:]) == 1 && bytes.Equal(e.Data[32:52], name) {
			return e.Data[52], true
		}
	}
	return 0, false
}

// TestBootChainRealLogs: for each real crypto-agile log, on the simulator
// and on swtpm, the verifier's first contact asks for the firmware log,
// the host is compliant, and the verdict's boot section reports PCR 14's
// start derived from the log (shim's MokList events on the Ubuntu and
// CoreOS shielded VMs), Secure Boot as the log's SecureBoot variable says,
// and the kernel digest; the next verification does not ask for the log
// and carries the chain over.
func TestBootChainRealLogs(t *testing.T) {
	names := []string{logUbuntu, logCoreOS, logSBCert, logCryptoAgile}
	logs := testutil.GoAttestationLogs(t, names...)
	for _, target := range []string{"sim", "swtpm"} {
		for _, name := range names {
			t.Run(target+"/"+name, func(t *testing.T) {
				fw := logs[name]
				want := expect(t, fw)
				h := startHost(t, target, fw, fw)
				v, next := verifier.Check(t.Context(), h.client, &verifier.Host{Version: verifier.HostVersion, Pinned: verifier.PinTOFU}, &attest.Policy{AllowSimulator: true}, verifier.Limits{})
				if v.Status != verifier.StatusCompliant || next == nil {
					t.Fatalf("verdict %s: %s", v.Status, v.Reason)
				}
				if !h.client.lastAsked() {
					t.Error("first contact did not ask for the firmware log")
				}
				b := v.Boot
				if b == nil || b.FirmwareLog != "verified" || !b.AgentPCRStartFromFirmware || !slices.Equal(b.BootPCRs, attest.DefaultBootPCRs()) {
					t.Fatalf("boot %+v", b)
				}
				switch got := b.AgentPCRStart["sha256"]; {
				case want.pcr14 == nil && got != "":
					t.Errorf("pcr 14 start %s, the log has no pcr 14 events", got)
				case want.pcr14 != nil && got != hex.EncodeToString(want.pcr14):
					t.Errorf("pcr 14 start %s, the log folds to %x", got, want.pcr14)
				case want.pcr14 != nil:
					t.Logf("%s: pcr 14 starts at sha256:%s (derived from the firmware log)", name, got)
				}
				if b.SecureBoot == nil || b.SecureBoot.Known != want.sbKnown || b.SecureBoot.Enabled != want.secureBoot {
					t.Errorf("secure boot %+v, the log's SecureBoot variable says known=%v enabled=%v", b.SecureBoot, want.sbKnown, want.secureBoot)
				}
				if b.Kernel == nil || b.Kernel.SHA256 != want.kernel || (b.Kernel.Source == "grub") != want.kernelGrub ||
					(want.kernelGrub && !strings.HasPrefix(b.Cmdline, want.cmdlineHead+" ")) {
					t.Errorf("kernel %+v cmdline %q, want sha256 %s from grub %v (%s)", b.Kernel, b.Cmdline, want.kernel, want.kernelGrub, want.cmdlineHead)
				}
				if !slices.Equal(b.UnloggedBanks, e2s(want.unlogged)) {
					t.Errorf("unlogged banks %v, want %v", b.UnloggedBanks, want.unlogged)
				}
				if want.kernelGrub && (b.Grub == nil || len(b.Grub.Commands) == 0 || !slices.ContainsFunc(b.Grub.Files, func(f verifier.GrubFile) bool {
					return f.Path == want.cmdlineHead && f.SHA256 == want.kernel
				})) {
					t.Errorf("grub %+v", b.Grub)
				}
				if !b.KernelFacts || b.KernelRelease == "" {
					t.Errorf("kernel facts: %+v", b)
				}

				v2, _ := verifier.Check(t.Context(), h.client, next, &attest.Policy{AllowSimulator: true}, verifier.Limits{})
				if v2.Status != verifier.StatusCompliant || v2.Boot == nil || v2.Boot.FirmwareLog != "verified earlier" || h.client.lastAsked() {
					t.Errorf("incremental: %s %s, boot %+v, asked for the log %v", v2.Status, v2.Reason, v2.Boot, h.client.lastAsked())
				}
			})
		}
	}
}

// TestBootChainRefusedThroughAgent: the agent serves a firmware log that
// is not the one replayed into its TPM: one byte of the kernel command
// line changed, an event missing, another machine's log. Each is a
// could-not-verify verdict naming bootchain's reason; without a log the
// shim host's PCR 14 start cannot be explained (start mismatch) and a
// policy requiring the log is not met on a host without PCR 14 events.
func TestBootChainRefusedThroughAgent(t *testing.T) {
	logs := testutil.GoAttestationLogs(t, logUbuntu, logCoreOS, logSBCert)
	fw := logs[logUbuntu]
	l, err := tpmtest.ParseFirmwareLog(fw)
	if err != nil {
		t.Fatal(err)
	}
	var cmdline, grubLinux tpmtest.FirmwareEvent
	for _, e := range l.Events {
		switch {
		case e.PCR == 8 && bytes.HasPrefix(e.Data, []byte("kernel_cmdline: ")):
			cmdline = e
		case e.PCR == 8 && bytes.HasPrefix(e.Data, []byte("grub_cmd: linux ")):
			grubLinux = e
		}
	}
	changed := bytes.Clone(fw)
	changed[cmdline.DataOffset+30] ^= 1
	missing := slices.Concat(fw[:grubLinux.Offset], fw[grubLinux.End:])

	for _, target := range []string{"sim", "swtpm"} {
		for _, c := range []struct {
			name   string
			served []byte
			reason bootchain.Reason
			text   string
		}{
			{"one byte of the kernel command line", changed, bootchain.DataMismatch, "event data mismatch"},
			{"the grub_cmd linux event missing", missing, bootchain.ReplayMismatch, "pcr replay mismatch"},
			{"another machine's log", logs[logCoreOS], bootchain.OtherBoot, "log from another boot"},
		} {
			t.Run(target+"/"+c.name, func(t *testing.T) {
				h := startHost(t, target, fw, c.served)
				v, next := verifier.Check(t.Context(), h.client, &verifier.Host{Version: verifier.HostVersion, Pinned: verifier.PinTOFU}, &attest.Policy{AllowSimulator: true}, verifier.Limits{})
				if v.Status != verifier.StatusUnverified || next != nil || !strings.Contains(v.Reason, "boot chain") || !strings.Contains(v.Reason, c.text) {
					t.Fatalf("verdict %s: %s; want could-not-verify with %q", v.Status, v.Reason, c.text)
				}
				id, err := h.client.Identity(t.Context(), &pb.IdentityRequest{})
				if err != nil {
					t.Fatal(err)
				}
				_, err = verifier.QuoteAndVerify(t.Context(), h.client, id.GetAkPublic(), nil, 0, verifier.Limits{})
				if !errors.Is(err, attest.BootChain) || !errors.Is(err, c.reason) {
					t.Errorf("QuoteAndVerify: %v, want %v", err, c.reason)
				}
			})
		}
	}

	t.Run("no log on a shim host", func(t *testing.T) {
		h := startHost(t, "sim", fw, nil)
		v, _ := verifier.Check(t.Context(), h.client, &verifier.Host{Version: verifier.HostVersion, Pinned: verifier.PinTOFU}, &attest.Policy{AllowSimulator: true}, verifier.Limits{})
		if v.Status != verifier.StatusUnverified || !strings.Contains(v.Reason, "start mismatch") {
			t.Errorf("verdict %s: %s; want could-not-verify, start mismatch", v.Status, v.Reason)
		}
	})
	t.Run("no log, policy requires one", func(t *testing.T) {
		h := startHost(t, "sim", logs[logSBCert], nil)
		pol := &attest.Policy{AllowSimulator: true, Boot: attest.BootPolicy{RequireFirmwareLog: true}}
		v, _ := verifier.Check(t.Context(), h.client, &verifier.Host{Version: verifier.HostVersion, Pinned: verifier.PinTOFU}, pol, verifier.Limits{})
		if v.Status != verifier.StatusNonCompliant || v.Boot == nil || v.Boot.FirmwareLog != "none" ||
			len(v.Violations) != 1 || v.Violations[0].Rule != string(attest.RuleRequireFirmwareLog) {
			t.Errorf("verdict %s %+v, boot %+v", v.Status, v.Violations, v.Boot)
		}
	})
}

// e2s makes an empty list nil, as the verdict leaves it.
func e2s(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
