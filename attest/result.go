package attest

import (
	"bytes"
	"crypto"
	"slices"
	"sync"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
)

// Result is what a successful Verify proves: the state of the agent's PCR
// and what the verified log says is in the kernel at the time of the quote.
// Only Verify makes one, after every check passed. Its accessors return
// copies: changing them changes neither the Result nor its State.
type Result struct {
	pcr        int
	bootID     string
	rebooted   bool
	clock      cel.ClockInfo
	quoted     map[crypto.Hash]map[int][]byte // per bank and PCR, every quoted value
	from, next uint64
	history    History
	state      *State

	// The Boot report is made from the boot step, the State's boot and the
	// quoted values the first time something asks for it (bootReport): a
	// verification does not copy the quoted values again for a report
	// nobody reads.
	bootStep *bootStep
	bootOnce sync.Once
	boot     *Boot

	// The lists of what is in the kernel are made from the State's
	// inventory the first time something asks for them (list), not by
	// Verify: a verification costs what its new records cost, whatever
	// the inventory holds.
	listOnce sync.Once
	lists    resultLists
}

// resultLists is the inventory of a Result as lists, in record order.
type resultLists struct {
	programs   []Program
	pending    []Program
	unmeasured []Unmeasured
	failed     []Program
	recoveries []Recovery
	agent      *cel.AgentStartInfo
}

// list returns the Result's lists, making them on first use.
func (r *Result) list() *resultLists {
	r.listOnce.Do(func() { r.state.inv.describe(&r.lists) })
	return &r.lists
}

// Program is one measured load and what the verified log says of it.
type Program struct {
	// Record is the number of the measurement record; ResultRecord that of
	// its load result (zero for a load still pending).
	Record       uint64
	ResultRecord uint64
	// Measurement is what the agent measured before the kernel saw the
	// artifact: name, scheme, signer, verdict, loader, data and program
	// digests, and whether the kernel checked the signature.
	Measurement *measure.Measurement
	// Result is the kernel's answer (nil for a pending load).
	Result *measure.LoadResult
	// Loader is the loader program that ran (the agent releases it as soon
	// as it has run: it is never in the kernel afterwards); Kernel are the
	// programs the load created that are still in the kernel (nothing
	// recorded them unloaded); Maps are the maps it created.
	Loader *measure.KernelObject
	Kernel []measure.KernelObject
	Maps   []measure.KernelObject
	// Binding lists, in words, how the programs the result names disagree
	// with the measurement (count, names, types, kernel tags:
	// measure.Binding); empty when they agree. A disagreement means the
	// record does not describe what the measured artifact loads: Evaluate
	// reports it whatever the policy.
	Binding []string
	// Died is set for a failed load whose result was rolled forward by the
	// next agent after a crash: its programs died with the agent.
	Died bool
}

// Name returns the artifact name.
func (p *Program) Name() string { return p.Measurement.Name }

// Signer returns who signed the artifact, as the agent's trust store
// matched it; nil if unsigned or unmatched.
func (p *Program) Signer() *measure.Signer { return p.Measurement.Signer }

// KernelChecked reports whether the kernel itself verified the signature
// at load time, besides the agent's userspace check.
func (p *Program) KernelChecked() bool {
	return p.Measurement.KernelCheck == measure.KernelCheckVerified
}

// Unmeasured is a program the agent found in the kernel that no measured
// load created. Result.Unmeasured lists those that have not left it; a
// History lists every one recorded, with Gone set for those that have.
type Unmeasured struct {
	Record  uint64
	Program *measure.KernelProgram
	Gone    bool
}

// Recovery is a record of what the agent's start-up reconciliation did.
type Recovery struct {
	Record uint64
	Info   cel.RecoveryInfo
}

// PCR returns the index of the agent's PCR.
func (r *Result) PCR() int { return r.pcr }

// BootID returns the kernel boot id from the boot header of this boot.
func (r *Result) BootID() string { return r.bootID }

// Rebooted reports whether the quote is from a later boot than the State
// given to Verify (always false without a State).
func (r *Result) Rebooted() bool { return r.rebooted }

// Clock returns the quote's clock information.
func (r *Result) Clock() cel.ClockInfo { return r.clock }

// PCRValues returns the quoted values of the agent's PCR, per bank.
func (r *Result) PCRValues() map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(r.quoted))
	for h, vals := range r.quoted {
		out[h] = bytes.Clone(vals[r.pcr])
	}
	return out
}

// Boot returns what the verification says about the boot: the quoted
// boot PCRs, the firmware's boot chain when a firmware log verified for
// this boot, and the kernel's facts from the boot header.
func (r *Result) Boot() *Boot { return r.bootReport().clone() }

// bootReport returns the Result's Boot, making it on first use.
func (r *Result) bootReport() *Boot {
	r.bootOnce.Do(func() { r.boot = r.bootStep.report(&r.state.boot, r.quoted) })
	return r.boot
}

// FromRecord and NextRecord delimit the records this verification replayed.
func (r *Result) FromRecord() uint64 { return r.from }

// NextRecord is the number of the first record after the verified log.
func (r *Result) NextRecord() uint64 { return r.next }

// Programs returns the measured loads with programs in the kernel, in log
// order.
func (r *Result) Programs() []Program { return clonePrograms(r.list().programs) }

// Pending returns measured loads whose result the log does not yet carry
// (the quote fell between the measurement and the load's answer): the
// loader may be running. Policy applies to them as to loaded programs.
func (r *Result) Pending() []Program { return clonePrograms(r.list().pending) }

// Failed returns the measured loads that did not load: refused by the
// agent, failed in the kernel or the loader, or aborted by a crash.
func (r *Result) Failed() []Program { return clonePrograms(r.list().failed) }

// Unmeasured returns the programs in the kernel that no measured load
// created.
func (r *Result) Unmeasured() []Unmeasured { return cloneUnmeasured(r.list().unmeasured) }

func cloneUnmeasured(us []Unmeasured) []Unmeasured {
	out := make([]Unmeasured, len(us))
	for i, u := range us {
		p := *u.Program
		p.XlatedSHA256 = slices.Clone(p.XlatedSHA256)
		p.MapIDs = slices.Clone(p.MapIDs)
		out[i] = Unmeasured{Record: u.Record, Program: &p, Gone: u.Gone}
	}
	return out
}

// Agent returns what the latest verified agent-start record of the boot
// says of the agent: its version, whether it had kernel access, how it
// observes programs others load, and the kind of TPM it says it uses. Nil
// before any agent-start record was verified.
func (r *Result) Agent() *cel.AgentStartInfo {
	ag := r.list().agent
	if ag == nil {
		return nil
	}
	a := *ag
	return &a
}

// History returns what the records this verification replayed say
// happened, besides what is in the kernel now: refused and failed loads,
// programs that came and went, agent starts, recoveries, lost events, and
// a previous boot whose end was never verified.
func (r *Result) History() History { return r.history.clone() }

// Recoveries returns the boot's recovery records.
func (r *Result) Recoveries() []Recovery { return slices.Clone(r.list().recoveries) }

// State returns the state to verify the next quote of this agent from.
func (r *Result) State() *State { return r.state }

func clonePrograms(ps []Program) []Program {
	out := make([]Program, len(ps))
	for i := range ps {
		out[i] = ps[i].clone()
	}
	return out
}

// clone deep-copies p by re-encoding its records: the canonical encodings
// round-trip exactly.
func (p *Program) clone() Program {
	c := *p
	if b, err := p.Measurement.MarshalBinary(); err == nil {
		c.Measurement, _ = measure.ParseMeasurement(b)
	}
	if p.Result != nil {
		if b, err := p.Result.MarshalBinary(); err == nil {
			c.Result, _ = measure.ParseLoadResult(b)
		}
	}
	if p.Loader != nil {
		l := *p.Loader
		c.Loader = &l
	}
	c.Kernel = slices.Clone(p.Kernel)
	c.Maps = slices.Clone(p.Maps)
	c.Binding = slices.Clone(p.Binding)
	return c
}

// describe turns the inventory into a Result's lists, in record order.
// The entries share the inventory's parsed records, which nothing
// modifies; the accessors hand out deep copies.
func (inv *inventory) describe(r *resultLists) {
	r.programs = make([]Program, 0, inv.loads)
	r.pending = make([]Program, 0, inv.pending)
	r.failed = make([]Program, 0, inv.failed)
	r.unmeasured = make([]Unmeasured, 0, inv.unmeasured)
	for _, e := range inv.live.All() {
		switch v := e.v.(type) {
		case *measured:
			if e.pending {
				r.pending = append(r.pending, Program{Record: e.rn, Measurement: v.m})
			}
		case *loadEntry:
			r.programs = append(r.programs, v.prog)
		case *failedEntry:
			r.failed = append(r.failed, v.program())
		case *measure.KernelProgram:
			r.unmeasured = append(r.unmeasured, Unmeasured{Record: e.rn, Program: v})
		case *Recovery:
			r.recoveries = append(r.recoveries, *v)
		case *cel.AgentStartInfo:
			r.agent = v
		}
	}
}

// program is the failed load as a Result lists it.
func (e *failedEntry) program() Program {
	return Program{Record: e.mrec, ResultRecord: e.rrec, Measurement: e.m, Result: e.res, Loader: e.res.Loader, Died: e.died}
}
