package agent

import (
	"strings"

	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// noKernelReason is the refusal of every load an agent without kernel
// access measures.
const noKernelReason = "kernel access unavailable: the agent runs without bpf() (no-kernel mode)"

// decide returns "" to allow the load, or the reason for refusing it: the
// load policy's reason, or, for an agent without kernel access, that.
func (s *settings) decide(in *measure.Inspection) string {
	if r := s.policy(in); r != "" || !s.NoKernel {
		return r
	}
	return noKernelReason
}

// policy is the load policy. It returns "" to allow the load, or the reason
// for refusing it. The order (docs/threat-model.md):
//
//  1. tampered: a signature that does not verify (BADSIG), cannot be read
//     (FAULT) or whose signed map hash does not match (UNEXPECTED), or a
//     broken link of the hash chain (excl_prog_hash or embedded data hash):
//     refused, whatever the configuration;
//  2. accepted (OK verdict, every link intact or kernel-bound): allowed;
//  3. anything else (unsigned, unknown signer, signed without a data hash):
//     allowed only with AllowUnsigned.
func (s *settings) policy(in *measure.Inspection) string {
	if s.allowAll {
		return ""
	}
	m := &in.Measurement
	switch {
	case tampered(m):
		return "tampered artifact: " + strings.Join(in.Problems(), "; ")
	case in.Accepted():
		return ""
	case s.AllowUnsigned:
		return ""
	}
	return "not accepted: " + strings.Join(in.Problems(), "; ")
}

func tampered(m *measure.Measurement) bool {
	switch m.Verdict {
	case cms.VerdictBadSig, cms.VerdictFault, cms.VerdictUnexpected:
		return true
	}
	return m.ExclLink == measure.LinkBroken || m.DataLink == measure.LinkBroken
}
