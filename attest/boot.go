package attest

import (
	"bytes"
	"crypto"
	"maps"
	"slices"

	"github.com/bpfattest/bpfattest/bootchain"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
)

// DefaultBootPCRs returns the boot PCRs a verifier asks the quote to
// cover by default, the ones an agent quotes by default: 0 to 7 (the
// firmware's) and 8 and 9 (GRUB's strings and files).
func DefaultBootPCRs() []int { return []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9} }

// Boot is what a verified Result says about the boot the agent runs in:
// the boot PCRs the quote covers, the firmware's boot chain when a
// firmware event log replayed to them (in this verification or, for the
// same boot, an earlier one), and what the kernel said about itself in the
// boot header.
type Boot struct {
	// BootPCRs are the PCRs quoted besides the agent's (VerifyOptions.BootPCRs),
	// and Quoted their quoted values per bank.
	BootPCRs []int
	Quoted   map[crypto.Hash]map[int][]byte
	// Chain is what the verified firmware log says (Secure Boot, boot
	// applications, GRUB's strings and files, the agent PCR's start), nil
	// when none was verified for this boot; Problem then says why ("no
	// firmware log", no boot PCRs asked for, or a quote that no longer
	// covers the boot PCRs a chain of this boot was verified against).
	Chain   *bootchain.State
	Problem string
	// FromState: Chain was verified with an earlier quote of this boot
	// (kept in the State), and this quote's boot PCRs still hold the
	// values it replayed to.
	FromState bool
	// StartDerived: the agent PCR's starting value (the boot header's) was
	// checked against the value the firmware log's events on that PCR
	// fold to (shim's MokList events on PCR 14), not only against the
	// verifier's expectation.
	StartDerived bool
	// Kernel is the boot header's record of the kernel (release, lockdown,
	// BPF sysctls); nil when the agent did not record it.
	Kernel *cel.KernelInfo
}

// Problems of a Boot without a chain.
const (
	NoFirmwareLog  = "no firmware log"
	noBootPCRs     = "no boot pcrs asked for (VerifyOptions.BootPCRs)"
	chainUncovered = "the quote does not cover the boot pcrs and banks the boot chain of this boot was verified against"
)

// stateBoot is what a State keeps of its boot besides the records: the
// boot header's starting values and kernel facts, and the verified
// firmware log.
type stateBoot struct {
	start  map[crypto.Hash][]byte // nil in a State decoded from before it was kept
	kernel *cel.KernelInfo
	chain  *bootChain
}

func (b *stateBoot) empty() bool { return b.start == nil && b.kernel == nil && b.chain == nil }

// bootChain is a firmware log verified against quoted values. A State
// keeps the log and the values, and rebuilds st from them when decoded.
type bootChain struct {
	log    []byte
	pcrs   []int                          // the boot PCRs, ascending, without the agent's
	quoted map[crypto.Hash]map[int][]byte // every quoted bank: the boot PCRs and the agent's
	st     *bootchain.State
}

// normalBootPCRs returns opts.BootPCRs ascending, unique, without the
// agent's PCR.
func normalBootPCRs(pcrs []int, agent int) ([]int, error) {
	out := slices.Compact(slices.Sorted(slices.Values(pcrs)))
	for _, p := range out {
		if err := cel.CheckPCR(p); err != nil {
			return nil, fail(BadOptions, nil, "boot pcrs: %v", err)
		}
	}
	return slices.DeleteFunc(out, func(p int) bool { return p == agent }), nil
}

// verifyChain replays a firmware log against the quoted values of the
// boot PCRs (bootchain.Verify), deriving the agent PCR's start. The banks
// the log does not carry are left out of the replay and reported.
func verifyChain(log []byte, pcrs []int, agent int, quoted map[crypto.Hash]map[int][]byte, allowSHA1 bool) (*bootChain, error) {
	c := &bootChain{log: bytes.Clone(log), pcrs: slices.Clone(pcrs), quoted: map[crypto.Hash]map[int][]byte{}}
	for h, vals := range quoted {
		c.quoted[h] = map[int][]byte{}
		for _, p := range append(slices.Clone(pcrs), agent) {
			if v, ok := vals[p]; ok {
				c.quoted[h][p] = bytes.Clone(v)
			}
		}
	}
	opts := bootchain.Options{BootPCRs: c.pcrs, AgentPCR: agent, AllowSHA1: allowSHA1, LoggedBanksOnly: true}
	if agent == 0 {
		// bootchain reads 0 as its default agent PCR.
		opts.AgentPCR = bootchain.NoAgentPCR
	}
	st, err := bootchain.Verify(c.log, c.quoted, opts)
	if err != nil {
		return nil, err
	}
	c.st = st
	return c, nil
}

// bootStep is the boot chain of one verification.
type bootStep struct {
	pcrs      []int
	chain     *bootChain
	fromState bool
	problem   string
}

// checkBootChain verifies the evidence's firmware log against the quoted
// boot PCRs, or carries the State's verified chain over when the quote is
// of the same boot and its boot PCRs still hold the values the chain
// replayed to. A firmware log that does not verify is a BootChain
// failure wrapping the *bootchain.Error.
func checkBootChain(ev *evidence.Evidence, opts *VerifyOptions, pcrs []int, quoted map[crypto.Hash]map[int][]byte, newBoot bool) (*bootStep, error) {
	b := &bootStep{pcrs: pcrs}
	var err error
	switch {
	case len(pcrs) == 0:
		b.problem = noBootPCRs
	case len(ev.FirmwareLog) > 0:
		if b.chain, err = verifyChain(ev.FirmwareLog, pcrs, ev.PCR, quoted, opts.AllowSHA1); err != nil {
			return nil, fail(BootChain, err, "firmware log")
		}
	case newBoot || opts.State.boot.chain == nil:
		b.problem = NoFirmwareLog
	default:
		c := opts.State.boot.chain
		if !chainCovered(c, quoted) {
			b.problem = chainUncovered
			break
		}
		for _, h := range slices.Sorted(maps.Keys(c.quoted)) {
			for _, p := range c.pcrs {
				if !bytes.Equal(quoted[h][p], c.quoted[h][p]) {
					return nil, fail(BootChain, nil, "%s pcr %d is %x, the boot chain verified for this boot replayed to %x",
						cel.BankName(h), p, quoted[h][p], c.quoted[h][p])
				}
			}
		}
		b.chain, b.fromState = c, true
	}
	return b, nil
}

// chainCovered reports whether the quote covers the chain's boot PCRs in
// exactly the chain's banks.
func chainCovered(c *bootChain, quoted map[crypto.Hash]map[int][]byte) bool {
	if !slices.Equal(slices.Sorted(maps.Keys(c.quoted)), slices.Sorted(maps.Keys(quoted))) {
		return false
	}
	for h := range c.quoted {
		for _, p := range c.pcrs {
			if _, ok := quoted[h][p]; !ok {
				return false
			}
		}
	}
	return true
}

// expectedStart returns the agent PCR's expected starting values in the
// quoted banks: derived from the firmware log's events on it when a chain
// verified (in the banks the log carries), else the verifier's
// StartingValues, else the reset value. A bank in both the derivation and
// StartingValues must agree.
func expectedStart(pcr int, banks []crypto.Hash, given map[crypto.Hash][]byte, b *bootStep) (map[crypto.Hash][]byte, error) {
	var derived map[crypto.Hash][]byte
	if b.chain != nil {
		derived = b.chain.st.StartingValues()
	}
	out := make(map[crypto.Hash][]byte, len(banks))
	for _, h := range banks {
		d, fromLog := derived[h]
		g, fromOpts := given[h]
		switch {
		case fromLog && fromOpts && !bytes.Equal(d, g):
			return nil, failAt(StartMismatch, 0, nil, "%s: the firmware log derives a start of %x, VerifyOptions.StartingValues say %x", cel.BankName(h), d, g)
		case fromLog:
			out[h] = d
		case fromOpts:
			out[h] = bytes.Clone(g)
		default:
			out[h] = resetValue(pcr, h)
		}
	}
	return out, nil
}

// checkStart checks a boot header's starting values against the expected
// ones, in the quoted banks.
func checkStart(start map[crypto.Hash][]byte, banks []crypto.Hash, want map[crypto.Hash][]byte) error {
	for _, h := range banks {
		if !bytes.Equal(start[h], want[h]) {
			return failAt(StartMismatch, 0, nil, "%s starts at %x, verifier expects %x", cel.BankName(h), start[h], want[h])
		}
	}
	return nil
}

// report is the Result's Boot.
func (b *bootStep) report(sb *stateBoot, quoted map[crypto.Hash]map[int][]byte) *Boot {
	r := &Boot{BootPCRs: slices.Clone(b.pcrs), Quoted: map[crypto.Hash]map[int][]byte{}, Problem: b.problem,
		FromState: b.fromState, Kernel: cloneKernel(sb.kernel)}
	for h, vals := range quoted {
		r.Quoted[h] = map[int][]byte{}
		for _, p := range b.pcrs {
			r.Quoted[h][p] = bytes.Clone(vals[p])
		}
	}
	if b.chain != nil {
		r.Chain = b.chain.st
		r.StartDerived = sb.start != nil
	}
	return r
}

// clone deep-copies a Boot.
func (b *Boot) clone() *Boot {
	if b == nil {
		return nil
	}
	c := *b
	c.BootPCRs = slices.Clone(b.BootPCRs)
	c.Quoted = make(map[crypto.Hash]map[int][]byte, len(b.Quoted))
	for h, vals := range b.Quoted {
		c.Quoted[h] = make(map[int][]byte, len(vals))
		for p, v := range vals {
			c.Quoted[h][p] = bytes.Clone(v)
		}
	}
	c.Chain = b.Chain.Clone()
	c.Kernel = cloneKernel(b.Kernel)
	return &c
}

func cloneKernel(k *cel.KernelInfo) *cel.KernelInfo {
	if k == nil {
		return nil
	}
	c := *k
	return &c
}
