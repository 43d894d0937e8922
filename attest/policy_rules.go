package attest

import "github.com/bpfattest/bpfattest/measure"

// Rules returns the rules p applies, by YAML key, in a fixed order: those
// its fields set, RuleBinding always, and RuleSimulator unless p allows the
// simulator. A rule not listed cannot be broken under p. A verdict carries
// the list, so that a reader knows what "no violation" covered (package ear
// reads it to tell a policy that approves the boot from one that is silent
// about it). The nil Policy applies what the zero Policy applies.
func (p *Policy) Rules() []Rule {
	if p == nil {
		p = &Policy{}
	}
	var out []Rule
	add := func(on bool, r Rule) {
		if on {
			out = append(out, r)
		}
	}
	var loader, data, progs bool
	for _, a := range p.Artifacts {
		loader = loader || a.LoaderSHA256 != nil
		data = data || a.DataSHA256 != nil
		progs = progs || len(a.Programs) > 0
	}
	add(p.RequireSigned, RuleRequireSigned)
	add(p.RequireKernelChecked, RuleRequireKernelChecked)
	add(p.ForbidUnmeasured, RuleForbidUnmeasured)
	add(len(p.Schemes) > 0, RuleSchemes)
	add(len(p.Signers) > 0, RuleSigners)
	add(len(p.ProgramTypes) > 0, RuleProgramTypes)
	add(loader, RuleLoaderDigest)
	add(data, RuleDataDigest)
	add(progs, RuleProgramDigest)
	add(p.RequirePinned, RuleRequirePinned)
	add(p.ForbidUnmeasuredHistory, RuleUnmeasuredHistory)
	add(p.MaxRefusedLoads != nil, RuleMaxRefused)
	add(p.ForbidLostEvents, RuleLostEvents)
	add(p.RequireEventObserver, RuleEventObserver)
	add(!p.AllowSimulator, RuleSimulator)
	add(true, RuleBinding)
	b := &p.Boot
	add(b.RequireFirmwareLog, RuleRequireFirmwareLog)
	add(b.RequireSecureBoot, RuleRequireSecureBoot)
	add(len(b.BootApps) > 0, RuleBootApps)
	add(len(b.Kernels) > 0, RuleKernels)
	add(b.Lockdown != "", RuleLockdown)
	add(len(b.ForbiddenCmdlineWords) > 0, RuleForbiddenCmdline)
	add(b.RequireUnprivilegedBPFDisabled, RuleRequireUnprivilegedBPFDisabled)
	return out
}

// AllowsUnmeasured reports whether an allowed_unmeasured entry of p
// matches kp: a program in the kernel without a measured load that the
// policy names as expected (systemd's, loaded before any agent). Such a
// program breaks no rule, and a verdict marks it allowed.
func (p *Policy) AllowsUnmeasured(kp *measure.KernelProgram) bool {
	return p != nil && p.allowedUnmeasured(kp)
}
