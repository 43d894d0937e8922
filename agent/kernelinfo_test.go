package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// TestParseKernelFacts reads each file format the kernel writes, and
// refuses what the kernel does not write.
func TestParseKernelFacts(t *testing.T) {
	for in, want := range map[string]string{
		"[none] integrity confidentiality\n": "none",
		"none [integrity] confidentiality\n": "integrity",
		"none integrity [confidentiality]\n": "confidentiality",
		"none integrity [paranoid]":          "paranoid", // a mode a later kernel adds is recorded as it says
	} {
		if got, err := parseLockdown([]byte(in)); err != nil || got != want {
			t.Errorf("lockdown %q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "none integrity\n", "[none] [integrity]\n", "[none integrity\n", "[]\n",
		"[Integrity]\n", "[in-tegrity]\n", "[" + strings.Repeat("a", 65) + "]", "\xff[none]"} {
		if got, err := parseLockdown([]byte(in)); err == nil {
			t.Errorf("lockdown %q: %q accepted", in, got)
		}
	}
	for in, want := range map[string]cel.Sysctl{"0\n": 0, "1\n": 1, "2": 2, "255\n": 255} {
		if got, err := parseSysctl([]byte(in)); err != nil || got != want {
			t.Errorf("sysctl %q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "256\n", "-1\n", "01\n", "1 \n", "1\n\n", "+1", "0x1"} {
		if got, err := parseSysctl([]byte(in)); err == nil || got != cel.SysctlUnread {
			t.Errorf("sysctl %q: %v accepted", in, got)
		}
	}
	if got, err := parseRelease([]byte("6.18.4-bpfattest+\n")); err != nil || got != "6.18.4-bpfattest+" {
		t.Errorf("release: %q, %v", got, err)
	}
	for _, in := range []string{"", "\n", "6.18 x\n", "6.18\t", strings.Repeat("6", 65), "6.18\xff"} {
		if got, err := parseRelease([]byte(in)); err == nil {
			t.Errorf("release %q: %q accepted", in, got)
		}
	}
}

// TestReadKernelInfo reads the facts from files, and records the ones it
// cannot read as unread, each named in the problems.
func TestReadKernelInfo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := kernelFiles{
		release:     write("osrelease", "6.18.4\n"),
		lockdown:    write("lockdown", "none [integrity] confidentiality\n"),
		unprivBPF:   write("unpriv", "2\n"),
		jitEnable:   write("jit", "1\n"),
		jitHarden:   write("harden", "garbage\n"),
		jitKallsyms: filepath.Join(dir, "missing"),
	}
	got, problems := readKernelInfo(f)
	want := cel.KernelInfo{Release: "6.18.4", Lockdown: "integrity", UnprivilegedBPFDisabled: 2, BPFJITEnable: 1,
		BPFJITHarden: cel.SysctlUnread, BPFJITKallsyms: cel.SysctlUnread}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kernel info (-want +got):\n%s", diff)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "harden") || !strings.Contains(problems[1], "missing") {
		t.Errorf("problems %q, want the unparsable and the missing file", problems)
	}
	// What this machine's kernel says encodes in a boot header.
	host, _ := readKernelInfo(hostKernelFiles())
	if _, err := host.MarshalBinary(); err != nil {
		t.Errorf("this kernel's facts %+v do not encode: %v", host, err)
	}
}

// TestReadFirmwareLog: the log is served when it can be read; absent,
// empty, too large and unconfigured logs are none, each with its reason.
func TestReadFirmwareLog(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "binary_bios_measurements")
	if err := os.WriteFile(good, []byte("events"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	large := filepath.Join(dir, "large")
	if err := os.WriteFile(large, make([]byte, evidence.MaxFirmwareLogSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	set := func(tpm, path string) settings { return settings{Config: Config{TPM: tpm, FirmwareLog: path}} }
	if f := readFirmwareLog(set("sim", good)); string(f.log) != "events" || f.describe() != good+" (6 bytes)" {
		t.Errorf("readable log: %q, %s", f.log, f.describe())
	}
	for name, c := range map[string]struct {
		s    settings
		path string
		why  string
	}{
		"simulator default": {set("sim", ""), "", "is not the one the host's firmware measured into"},
		"swtpm default":     {set("swtpm:unix:/s", ""), "", "is not the one the host's firmware measured into"},
		"none":              {set("/dev/tpmrm0", NoFirmwareLog), "", "not configured"},
		"absent":            {set("sim", filepath.Join(dir, "nope")), filepath.Join(dir, "nope"), "does not exist"},
		"empty":             {set("sim", empty), empty, "is empty"},
		"too large":         {set("sim", large), large, "larger than"},
		"a directory":       {set("sim", dir), dir, "unreadable"},
	} {
		f := readFirmwareLog(c.s)
		if f.log != nil || f.path != c.path || !strings.Contains(f.problem, c.why) || !strings.HasPrefix(f.describe(), "none: ") {
			t.Errorf("%s: log %d bytes, path %q, problem %q; want none, %q, %q", name, len(f.log), f.path, f.problem, c.path, c.why)
		}
	}
	if p, _ := firmwareLogPath(set("/dev/tpmrm0", "")); p != DefaultFirmwareLog {
		t.Errorf("device default %q, want %s", p, DefaultFirmwareLog)
	}
}

// FuzzKernelFacts feeds the three kernel file parsers: no panic, and what
// they accept encodes in a boot header.
func FuzzKernelFacts(f *testing.F) {
	for _, s := range []string{"none [integrity] confidentiality\n", "2\n", "6.18.4\n", "[]", "255"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var k cel.KernelInfo
		var err error
		if k.Lockdown, err = parseLockdown(b); err != nil && k.Lockdown != "" {
			t.Fatalf("lockdown %q with error %v", k.Lockdown, err)
		}
		if k.Release, err = parseRelease(b); err != nil && k.Release != "" {
			t.Fatalf("release %q with error %v", k.Release, err)
		}
		k.UnprivilegedBPFDisabled, _ = parseSysctl(b)
		if _, err := k.MarshalBinary(); err != nil {
			t.Fatalf("accepted facts %+v do not encode: %v", k, err)
		}
	})
}
