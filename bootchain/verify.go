package bootchain

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // the banks Verify replays: SHA-1, SHA-256, SHA-384, SHA-512
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	goattest "github.com/google/go-attestation/attest"
)

const (
	// DefaultAgentPCR is the agent's PCR when Options.AgentPCR is zero
	// (docs/tpm.md says why 14).
	DefaultAgentPCR = 14
	// NoAgentPCR as Options.AgentPCR derives no agent starting value.
	NoAgentPCR = -1
	// MaxLogSize bounds the firmware log Verify reads. Real logs are tens
	// of kilobytes (a TPM 2.0 PC Client log area is typically 64 KiB, plus
	// the final events table).
	MaxLogSize = 8 << 20
	// numPCRs is the number of PCRs of a PC Client TPM.
	numPCRs = 24
	// defaultLastBootPCR: the boot PCRs default to 0 through 9 (firmware,
	// boot manager, GRUB), less the agent's.
	defaultLastBootPCR = 9
)

// Options says which PCRs Verify replays.
type Options struct {
	// BootPCRs are the PCRs whose firmware events must replay to the
	// quoted values. Nil means 0 to 9 without the agent PCR. It must not
	// contain the agent PCR, whose quoted value includes the agent's own
	// extends.
	BootPCRs []int
	// AgentPCR is the PCR the agent extends. Zero means DefaultAgentPCR
	// (PCR 0 is never the agent's); NoAgentPCR (or any negative value)
	// means none.
	AgentPCR int
	// AllowSHA1 accepts a quote whose only bank is SHA-1 (a TPM 1.2-format
	// log's). SHA-1 banks are replayed whenever they are quoted, but
	// without this a stronger bank is required.
	AllowSHA1 bool
	// LoggedBanksOnly replays only the quoted banks the log carries
	// digests for, instead of refusing the others (UnsupportedBank): a TPM
	// may have a bank allocated that the firmware does not log. At least
	// one quoted bank must remain (a stronger one than SHA-1 unless
	// AllowSHA1); State.Unlogged lists those left out, whose values
	// nothing explains.
	LoggedBanksOnly bool
}

// normalize returns the boot PCRs (sorted, unique) and the agent PCR.
func (o Options) normalize() (boot []int, agent int, _ error) {
	switch {
	case o.AgentPCR == 0:
		agent = DefaultAgentPCR
	case o.AgentPCR < 0:
		agent = NoAgentPCR
	case o.AgentPCR >= numPCRs:
		return nil, 0, refuse(BadOptions, "agent pcr %d out of range 0..%d", o.AgentPCR, numPCRs-1)
	default:
		agent = o.AgentPCR
	}
	if o.BootPCRs == nil {
		for p := 0; p <= defaultLastBootPCR; p++ {
			if p != agent {
				boot = append(boot, p)
			}
		}
		return boot, agent, nil
	}
	boot = slices.Compact(slices.Sorted(slices.Values(o.BootPCRs)))
	if len(boot) == 0 {
		return nil, 0, refuse(BadOptions, "no boot pcrs")
	}
	if boot[0] < 0 || boot[len(boot)-1] >= numPCRs {
		return nil, 0, refuse(BadOptions, "boot pcrs %v out of range 0..%d", boot, numPCRs-1)
	}
	if slices.Contains(boot, agent) {
		return nil, 0, refuse(BadOptions, "boot pcrs %v include the agent pcr %d", boot, agent)
	}
	return boot, agent, nil
}

// event is one measured event of the log with its digest in every bank the
// log carries.
type event struct {
	pos     int
	pcr     int
	typ     uint32
	data    []byte
	digests map[crypto.Hash][]byte
}

// Verify checks a TCG PC Client firmware event log (the bytes of
// /sys/kernel/security/tpm0/binary_bios_measurements: TPM 1.2-format SHA-1
// events, or crypto-agile events after a Spec ID event) against PCR values
// a verified quote covers, and returns what the log then says about the
// boot. quoted holds the quote-verified values per bank and PCR index: the
// boot PCRs in every quoted bank, and optionally the agent PCR. The caller
// must have checked the quote (signature, nonce, PCR digest); Verify trusts
// these values and nothing in the log.
//
// In order: the options and quoted values are usable; the log parses
// (go-attestation's ParseEventLog) and carries digests for every quoted
// bank; every event of a boot or agent PCR has a digest for each bank the
// log declares, and where the PC Client spec defines its digest as the hash
// of its data (see dataCheck) the data hashes to it in every bank; then,
// per quoted bank and boot PCR, the events replay to the quoted value
// (go-attestation's EventLog.Verify, with its firmware workarounds) and a
// boot PCR without events holds its reset value. Only then does it read
// Secure Boot (go-attestation's ParseSecurebootState), the boot
// applications, GRUB's strings and files, and the agent PCR's starting
// value.
//
// A refusal is an *Error; errors.Is matches its Reason. Verify does not
// panic on any input: a panic inside go-attestation is returned as
// Malformed (see guard).
func Verify(log []byte, quoted map[crypto.Hash]map[int][]byte, opts Options) (*State, error) {
	boot, agent, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	banks, err := checkQuoted(quoted, boot, opts.AllowSHA1)
	if err != nil {
		return nil, err
	}
	el, evs, logBanks, err := parse(log)
	if err != nil {
		return nil, err
	}
	var unlogged []crypto.Hash
	for _, h := range banks {
		if !slices.Contains(logBanks, h) {
			if opts.LoggedBanksOnly {
				unlogged = append(unlogged, h)
				continue
			}
			return nil, &Error{Reason: UnsupportedBank, Bank: h, Event: -1,
				Detail: fmt.Sprintf("the log carries digests for %s only", bankNames(logBanks))}
		}
	}
	if len(unlogged) > 0 {
		banks = slices.DeleteFunc(banks, func(h crypto.Hash) bool { return slices.Contains(unlogged, h) })
		switch {
		case len(banks) == 0:
			return nil, refuse(UnsupportedBank, "the log carries digests for %s, none of the quoted banks", bankNames(logBanks))
		case !opts.AllowSHA1 && slices.Equal(banks, []crypto.Hash{crypto.SHA1}):
			return nil, &Error{Reason: UnsupportedBank, Bank: crypto.SHA1, Event: -1,
				Detail: "the log carries no quoted bank but sha1 (Options.AllowSHA1 not set)"}
		}
	}
	checked := slices.Clone(boot)
	if agent >= 0 {
		checked = append(checked, agent)
	}
	if err := checkEvents(evs, checked, logBanks); err != nil {
		return nil, err
	}
	st := &State{Banks: banks, Unlogged: unlogged, BootPCRs: boot, LastBootApp: -1}
	verified := make(map[crypto.Hash][]goattest.Event, len(banks))
	for _, h := range banks {
		if verified[h], err = replayBank(el, evs, h, quoted[h], boot, st); err != nil {
			return nil, err
		}
	}
	if st.SecureBoot, err = secureBoot(verified, boot); err != nil {
		return nil, err
	}
	if slices.Contains(boot, 4) {
		st.BootApps = bootApps(evs, banks)
		st.LastBootApp = len(st.BootApps) - 1
	}
	st.Grub = grub(evs, banks, boot)
	st.Agent = agentStart(evs, logBanks, agent, quoted, banks)
	return st, nil
}

// checkQuoted checks the quoted values and returns the quoted banks,
// ascending.
func checkQuoted(quoted map[crypto.Hash]map[int][]byte, boot []int, allowSHA1 bool) ([]crypto.Hash, error) {
	if len(quoted) == 0 {
		return nil, refuse(MissingQuotedPCR, "no quoted bank")
	}
	banks := slices.Sorted(maps.Keys(quoted))
	strong := false
	for _, h := range banks {
		if _, err := goattest.FromCryptoHash(h); err != nil || !h.Available() {
			return nil, &Error{Reason: UnsupportedBank, Bank: h, Event: -1, Detail: "not a bank go-attestation replays"}
		}
		strong = strong || h != crypto.SHA1
		for p, v := range quoted[h] {
			if p < 0 || p >= numPCRs {
				return nil, &Error{Reason: BadOptions, Bank: h, Event: -1, Detail: fmt.Sprintf("quoted pcr %d out of range", p)}
			}
			if len(v) != h.Size() {
				return nil, &Error{Reason: BadOptions, Bank: h, PCRs: []int{p}, Event: -1,
					Detail: fmt.Sprintf("quoted value of %d bytes, want %d", len(v), h.Size())}
			}
		}
		var missing []int
		for _, p := range boot {
			if _, ok := quoted[h][p]; !ok {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			return nil, &Error{Reason: MissingQuotedPCR, Bank: h, PCRs: missing, Event: -1, Detail: "boot pcr not quoted"}
		}
	}
	if !strong && !allowSHA1 {
		return nil, &Error{Reason: UnsupportedBank, Bank: crypto.SHA1, Event: -1, Detail: "only sha1 quoted (Options.AllowSHA1 not set)"}
	}
	return banks, nil
}

// parse parses the log with go-attestation and lists its events with every
// bank's digest.
func parse(log []byte) (*goattest.EventLog, []event, []crypto.Hash, error) {
	if len(log) == 0 {
		return nil, nil, nil, refuse(Malformed, "empty log")
	}
	if len(log) > MaxLogSize {
		return nil, nil, nil, refuse(Malformed, "%d bytes, more than %d", len(log), MaxLogSize)
	}
	var el *goattest.EventLog
	if err := guard("ParseEventLog", func() (err error) { el, err = goattest.ParseEventLog(log); return err }); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, nil, nil, e
		}
		return nil, nil, nil, &Error{Reason: Malformed, Event: -1, Err: err}
	}
	var banks []crypto.Hash
	for _, a := range el.Algs {
		h, ok := cryptoHash(a)
		if !ok {
			return nil, nil, nil, refuse(Malformed, "log declares hash algorithm %#x", uint8(a))
		}
		if !slices.Contains(banks, h) {
			banks = append(banks, h)
		}
	}
	slices.Sort(banks)
	if len(banks) == 0 {
		return nil, nil, nil, refuse(Malformed, "log declares no hash algorithm")
	}
	// Positions count the crypto-agile log's Spec ID event, which
	// go-attestation does not return.
	first := 0
	if isCryptoAgile(log) {
		first = 1
	}
	var evs []event
	for _, h := range banks {
		alg, _ := goattest.FromCryptoHash(h)
		raw := el.Events(alg)
		if evs == nil {
			evs = make([]event, len(raw))
			for i, e := range raw {
				evs[i] = event{pos: first + i, pcr: e.Index, typ: uint32(e.Type), data: e.Data,
					digests: make(map[crypto.Hash][]byte, len(banks))}
			}
		}
		for i, e := range raw {
			if e.Digest != nil {
				evs[i].digests[h] = e.Digest
			}
		}
	}
	return el, evs, banks, nil
}

// isCryptoAgile reports whether the log starts with the Spec ID event of a
// crypto-agile log: a TCG_PCR_EVENT of type EV_NO_ACTION whose data starts
// with "Spec ID Event03" (TCG PC Client PFP §10.4.5.1).
func isCryptoAgile(log []byte) bool {
	const dataOff = 4 + 4 + 20 + 4
	return len(log) >= dataOff+16 && binary.LittleEndian.Uint32(log[4:]) == evNoAction &&
		bytes.Equal(log[dataOff:dataOff+16], []byte("Spec ID Event03\x00"))
}

func cryptoHash(a goattest.HashAlg) (crypto.Hash, bool) {
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if x, _ := goattest.FromCryptoHash(h); x == a {
			return h, true
		}
	}
	return 0, false
}

// checkEvents checks that every measured event of a checked PCR has a
// digest in every bank of the log and, where its digest is defined over
// its data, that the data hashes to it.
func checkEvents(evs []event, checked []int, banks []crypto.Hash) error {
	for _, e := range evs {
		if e.typ == evNoAction || !slices.Contains(checked, e.pcr) {
			continue
		}
		alts := dataCheck(e.pcr, e.typ, e.data)
		for _, h := range banks {
			d := e.digests[h]
			if len(d) != h.Size() {
				return &Error{Reason: Malformed, Bank: h, PCRs: []int{e.pcr}, Event: e.pos,
					Detail: fmt.Sprintf("%s has no %s digest", EventTypeName(e.typ), bankName(h))}
			}
			if alts != nil && !matchesData(h, d, alts) {
				return &Error{Reason: DataMismatch, Bank: h, PCRs: []int{e.pcr}, Event: e.pos,
					Detail: fmt.Sprintf("%s data does not hash to its digest", EventTypeName(e.typ))}
			}
		}
	}
	return nil
}

// measured returns the events of pcr that extend it (all but EV_NO_ACTION).
func measured(evs []event, pcr int) []event {
	var out []event
	for _, e := range evs {
		if e.pcr == pcr && e.typ != evNoAction {
			out = append(out, e)
		}
	}
	return out
}

// replayBank replays every boot PCR of one bank against its quoted value,
// records the results in st, and returns the events go-attestation
// verified.
func replayBank(el *goattest.EventLog, evs []event, h crypto.Hash, quoted map[int][]byte, boot []int, st *State) ([]goattest.Event, error) {
	var (
		verified []goattest.Event
		failed   []int
		telling  int // boot PCRs with events, or not at their reset value
	)
	for _, p := range boot {
		want := quoted[p]
		n := len(measured(evs, p))
		if n == 0 {
			if !bytes.Equal(want, resetValue(p, h, startupLocality(evs, p))) {
				failed = append(failed, p)
				telling++
			}
			st.Replayed = append(st.Replayed, PCRReplay{Bank: h, PCR: p, Value: slices.Clone(want)})
			continue
		}
		telling++
		var got []goattest.Event
		err := guard("EventLog.Verify", func() (err error) {
			got, err = el.Verify([]goattest.PCR{{Index: p, Digest: want, DigestAlg: h}})
			return err
		})
		var re goattest.ReplayError
		var e *Error
		switch {
		case errors.As(err, &e):
			return nil, e
		case errors.As(err, &re):
			failed = append(failed, p)
			continue
		case err != nil:
			return nil, &Error{Reason: ReplayMismatch, Bank: h, PCRs: []int{p}, Event: -1, Err: err}
		}
		if len(got) > n {
			var added []string
			for _, e := range got[n:] {
				added = append(added, fmt.Sprintf("%q", e.Data))
			}
			st.Workarounds = append(st.Workarounds, Workaround{Bank: h, PCR: p,
				Detail: fmt.Sprintf("replayed with events the firmware measured but did not log: %s", strings.Join(added, ", "))})
		}
		st.Replayed = append(st.Replayed, PCRReplay{Bank: h, PCR: p, Events: n, Value: slices.Clone(want)})
		verified = append(verified, got...)
	}
	if len(failed) == 0 {
		return verified, nil
	}
	if 2*len(failed) > telling {
		return nil, &Error{Reason: OtherBoot, Bank: h, PCRs: failed, Event: -1,
			Detail: fmt.Sprintf("%d of the %d boot pcrs that carry events or values do not replay: the log is not of the quoted boot", len(failed), telling)}
	}
	return nil, &Error{Reason: ReplayMismatch, Bank: h, PCRs: failed, Event: -1,
		Detail: "the log's events do not fold to the quoted value (an event missing, added, reordered or changed)"}
}

// startupLocality returns the locality TPM2_Startup was issued from when
// pcr is 0 and the log has a StartupLocality EV_NO_ACTION event (PFP
// §10.4.5.3), else 0.
func startupLocality(evs []event, pcr int) byte {
	if pcr != 0 {
		return 0
	}
	for _, e := range evs {
		if e.pcr == 0 && e.typ == evNoAction && len(e.data) == 17 && bytes.HasPrefix(e.data, []byte("StartupLocality\x00")) {
			return e.data[16]
		}
	}
	return 0
}

// resetValue is a PCR's value after TPM2_Startup(CLEAR): all ones for the
// dynamic-launch PCRs 17 to 22, zeros for the others, with PCR 0's last
// byte the startup locality (TCG PC Client Platform TPM Profile, PCR
// attributes).
func resetValue(pcr int, h crypto.Hash, locality byte) []byte {
	v := make([]byte, h.Size())
	if pcr >= 17 && pcr <= 22 {
		for i := range v {
			v[i] = 0xff
		}
	}
	v[len(v)-1] |= locality
	return v
}

// secureBoot reads the Secure Boot state from the verified PCR 2 and 7
// events of the SHA-256 bank, or of the SHA-1 bank.
func secureBoot(verified map[crypto.Hash][]goattest.Event, boot []int) (SecureBoot, error) {
	if !slices.Contains(boot, 7) {
		return SecureBoot{Problem: "pcr 7 not among the boot pcrs"}, nil
	}
	evs, ok := verified[crypto.SHA256]
	if !ok {
		if evs, ok = verified[crypto.SHA1]; !ok {
			return SecureBoot{Problem: "needs a quoted sha256 or sha1 bank"}, nil
		}
	}
	var sb *goattest.SecurebootState
	err := guard("ParseSecurebootState", func() (err error) { sb, err = goattest.ParseSecurebootState(evs); return err })
	var e *Error
	if errors.As(err, &e) {
		return SecureBoot{}, e
	}
	if err != nil {
		return SecureBoot{Problem: err.Error()}, nil
	}
	return SecureBoot{
		Known:                 true,
		Enabled:               sb.Enabled,
		PK:                    signatureDB(sb.PlatformKeys, sb.PlatformKeyHashes),
		KEK:                   signatureDB(sb.ExchangeKeys, sb.ExchangeKeyHashes),
		DB:                    signatureDB(sb.PermittedKeys, sb.PermittedHashes),
		DBX:                   signatureDB(sb.ForbiddenKeys, sb.ForbiddenHashes),
		BootAuthorities:       certs(sb.PostSeparatorAuthority),
		FirmwareAuthorities:   certs(sb.PreSeparatorAuthority),
		DMAProtectionDisabled: sb.DMAProtectionDisabled,
	}, nil
}

// guard runs a go-attestation call and turns a panic inside it into a
// Malformed *Error: its parsers read the log, which is attacker data, and
// a panic there must be a refusal, not a crash of the verifier. Only
// go-attestation calls are guarded, so a bug of this package still
// panics where tests see it.
func guard(call string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Reason: Malformed, Event: -1, Detail: fmt.Sprintf("go-attestation's %s failed on this log: %v", call, r)}
		}
	}()
	return f()
}
