package attest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/bpfattest/bpfattest/measure"
)

// ErrPolicy is wrapped by every error parsing a policy.
var ErrPolicy = errors.New("invalid policy")

// PolicyVersion is the policy file format version ParsePolicy reads.
const PolicyVersion = 1

// MaxPolicySize bounds a policy file, in bytes.
const MaxPolicySize = 1 << 20

// policyFile is the YAML form of a Policy (docs/policy.md).
type policyFile struct {
	Version              int                     `yaml:"version"`
	RequireSigned        bool                    `yaml:"require_signed"`
	RequireKernelChecked bool                    `yaml:"require_kernel_checked"`
	ForbidUnmeasured     bool                    `yaml:"forbid_unmeasured"`
	AllowedSchemes       []string                `yaml:"allowed_schemes"`
	AllowedSigners       []signerFile            `yaml:"allowed_signers"`
	AllowedProgramTypes  []string                `yaml:"allowed_program_types"`
	Artifacts            map[string]artifactFile `yaml:"artifacts"`
	RequirePinned        bool                    `yaml:"require_pinned"`
	AllowedUnmeasured    []unmeasuredFile        `yaml:"allowed_unmeasured"`
	ForbidUnmeasuredHist bool                    `yaml:"forbid_unmeasured_history"`
	MaxRefusedLoads      *int                    `yaml:"max_refused_loads"`
	ForbidLostEvents     bool                    `yaml:"forbid_lost_events"`
	RequireEventObserver bool                    `yaml:"require_event_observer"`
	AllowSimulator       bool                    `yaml:"allow_simulator"`
	bootFile             `yaml:",inline"`
}

type unmeasuredFile struct {
	Name         string `yaml:"name"`
	Type         string `yaml:"type"`
	Tag          string `yaml:"tag"`
	XlatedSHA256 string `yaml:"xlated_sha256"`
}

type signerFile struct {
	CertSHA256 string `yaml:"cert_sha256"`
	SKID       string `yaml:"skid"`
	Subject    string `yaml:"subject"`
}

type artifactFile struct {
	LoaderSHA256 string            `yaml:"loader_sha256"`
	DataSHA256   string            `yaml:"data_sha256"`
	Programs     map[string]string `yaml:"programs"`
}

// ParsePolicy reads a policy from YAML. Unknown keys, a missing or other
// version, unknown schemes or program types, and digests that are not hex
// of the right length are errors wrapping ErrPolicy. One document only.
func ParsePolicy(b []byte) (*Policy, error) {
	if len(b) > MaxPolicySize {
		return nil, fmt.Errorf("attest/policy: %w: %d bytes, limit %d", ErrPolicy, len(b), MaxPolicySize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f policyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("attest/policy: %w: %w", ErrPolicy, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("attest/policy: %w: more than one document", ErrPolicy)
	}
	p, err := f.policy()
	if err != nil {
		return nil, fmt.Errorf("attest/policy: %w: %w", ErrPolicy, err)
	}
	return p, nil
}

func (f *policyFile) policy() (*Policy, error) {
	if f.Version != PolicyVersion {
		return nil, fmt.Errorf("version %d, want %d", f.Version, PolicyVersion)
	}
	p := &Policy{
		RequireSigned:           f.RequireSigned,
		RequireKernelChecked:    f.RequireKernelChecked,
		ForbidUnmeasured:        f.ForbidUnmeasured,
		RequirePinned:           f.RequirePinned,
		ForbidUnmeasuredHistory: f.ForbidUnmeasuredHist,
		ForbidLostEvents:        f.ForbidLostEvents,
		RequireEventObserver:    f.RequireEventObserver,
		AllowSimulator:          f.AllowSimulator,
	}
	if f.MaxRefusedLoads != nil {
		if *f.MaxRefusedLoads < 0 {
			return nil, fmt.Errorf("max_refused_loads: %d is negative", *f.MaxRefusedLoads)
		}
		n := *f.MaxRefusedLoads
		p.MaxRefusedLoads = &n
	}
	for i, u := range f.AllowedUnmeasured {
		var r UnmeasuredRule
		var err error
		r.Name = u.Name
		if u.Type != "" {
			v, ok := progTypeByName(u.Type)
			if !ok {
				return nil, fmt.Errorf("allowed_unmeasured[%d].type: unknown program type %q", i, u.Type)
			}
			r.Type = &v
		}
		if r.Tag, err = hexField(u.Tag, 8); err != nil {
			return nil, fmt.Errorf("allowed_unmeasured[%d].tag: %w", i, err)
		}
		if r.XlatedSHA256, err = hexField(u.XlatedSHA256, 32); err != nil {
			return nil, fmt.Errorf("allowed_unmeasured[%d].xlated_sha256: %w", i, err)
		}
		if r.Name == "" && r.Type == nil && r.Tag == nil && r.XlatedSHA256 == nil {
			return nil, fmt.Errorf("allowed_unmeasured[%d]: names no name, type, tag or xlated_sha256", i)
		}
		p.AllowedUnmeasured = append(p.AllowedUnmeasured, r)
	}
	for _, s := range f.AllowedSchemes {
		sc, ok := schemeByName(s)
		if !ok {
			return nil, fmt.Errorf("allowed_schemes: unknown scheme %q (want unsigned, kernel-lskel or hornet)", s)
		}
		p.Schemes = append(p.Schemes, sc)
	}
	for i, s := range f.AllowedSigners {
		var r SignerRule
		var err error
		if r.CertSHA256, err = hexField(s.CertSHA256, 32); err != nil {
			return nil, fmt.Errorf("allowed_signers[%d].cert_sha256: %w", i, err)
		}
		if r.SKID, err = hexField(s.SKID, 0); err != nil {
			return nil, fmt.Errorf("allowed_signers[%d].skid: %w", i, err)
		}
		r.Subject = s.Subject
		if r.CertSHA256 == nil && r.SKID == nil && r.Subject == "" {
			return nil, fmt.Errorf("allowed_signers[%d]: names no cert_sha256, skid or subject", i)
		}
		p.Signers = append(p.Signers, r)
	}
	for _, t := range f.AllowedProgramTypes {
		v, ok := progTypeByName(t)
		if !ok {
			return nil, fmt.Errorf("allowed_program_types: unknown program type %q", t)
		}
		p.ProgramTypes = append(p.ProgramTypes, v)
	}
	var err error
	if p.Boot, err = f.bootFile.policy(); err != nil {
		return nil, err
	}
	if len(f.Artifacts) > 0 {
		p.Artifacts = make(map[string]ArtifactPin, len(f.Artifacts))
	}
	for name, a := range f.Artifacts {
		if name == "" {
			return nil, fmt.Errorf("artifacts: empty artifact name")
		}
		var pin ArtifactPin
		var err error
		if pin.LoaderSHA256, err = hexField(a.LoaderSHA256, 32); err != nil {
			return nil, fmt.Errorf("artifacts.%s.loader_sha256: %w", name, err)
		}
		if pin.DataSHA256, err = hexField(a.DataSHA256, 32); err != nil {
			return nil, fmt.Errorf("artifacts.%s.data_sha256: %w", name, err)
		}
		for prog, d := range a.Programs {
			v, err := hexField(d, 32)
			if err != nil || v == nil {
				return nil, fmt.Errorf("artifacts.%s.programs.%s: want 32 bytes of hex", name, prog)
			}
			if pin.Programs == nil {
				pin.Programs = map[string][]byte{}
			}
			pin.Programs[prog] = v
		}
		p.Artifacts[name] = pin
	}
	return p, nil
}

// hexField decodes a hex digest of n bytes (any non-zero length if n is
// 0); an empty string is nil.
func hexField(s string, n int) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil {
		return nil, fmt.Errorf("not hex: %w", err)
	}
	if (n > 0 && len(b) != n) || len(b) == 0 {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), n)
	}
	return b, nil
}

func schemeByName(s string) (measure.Scheme, bool) {
	for _, sc := range []measure.Scheme{measure.SchemeUnsigned, measure.SchemeKernel, measure.SchemeHornet} {
		if sc.String() == s {
			return sc, true
		}
	}
	return 0, false
}

// progTypes names enum bpf_prog_type (include/uapi/linux/bpf.h, Linux
// 6.18) by its suffix in lower case.
func progTypes() []string {
	return []string{
		"unspec", "socket_filter", "kprobe", "sched_cls", "sched_act", "tracepoint", "xdp",
		"perf_event", "cgroup_skb", "cgroup_sock", "lwt_in", "lwt_out", "lwt_xmit", "sock_ops",
		"sk_skb", "cgroup_device", "sk_msg", "raw_tracepoint", "cgroup_sock_addr", "lwt_seg6local",
		"lirc_mode2", "sk_reuseport", "flow_dissector", "cgroup_sysctl", "raw_tracepoint_writable",
		"cgroup_sockopt", "tracing", "struct_ops", "ext", "lsm", "sk_lookup", "syscall", "netfilter",
	}
}

// progTypeByName accepts a name from progTypes (with or without the
// BPF_PROG_TYPE_ prefix, any case, with or without underscores, so
// cilium/ebpf's names such as "socketfilter" read too) or a decimal number.
func progTypeByName(s string) (uint32, bool) {
	n := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(s), "bpf_prog_type_"), "_", "")
	for i, name := range progTypes() {
		if strings.ReplaceAll(name, "_", "") == n {
			return uint32(i), true
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil
}

func progTypeName(t uint32) string {
	if names := progTypes(); int(t) < len(names) {
		return names[t]
	}
	return strconv.FormatUint(uint64(t), 10)
}
