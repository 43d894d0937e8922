package bootchain

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"strings"
)

func signatureDB(keys []x509.Certificate, hashes [][]byte) SignatureDB {
	return SignatureDB{Certs: certs(keys), Hashes: len(hashes)}
}

func certs(cs []x509.Certificate) []Cert {
	var out []Cert
	for i := range cs {
		sum := sha256.Sum256(cs[i].Raw)
		out = append(out, Cert{Subject: cs[i].Subject.String(), SHA256: sum[:]})
	}
	return out
}

// digestsIn returns e's digests of the given banks.
func digestsIn(e event, banks []crypto.Hash) map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(banks))
	for _, h := range banks {
		out[h] = slices.Clone(e.digests[h])
	}
	return out
}

// codeEvents returns pcr's measured events whose digest is not the hash of
// their data: what they measured is not in the log, only its digest (code
// images, files). The logged type does not decide: an event retyped to
// hide it from a reader that goes by type stays here.
func codeEvents(evs []event, pcr int) []event {
	var out []event
	for _, e := range measured(evs, pcr) {
		if dataCheck(e.pcr, e.typ, e.data) == nil {
			out = append(out, e)
		}
	}
	return out
}

// bootApps lists PCR 4's code events.
func bootApps(evs []event, banks []crypto.Hash) []BootApp {
	var apps []BootApp
	for _, e := range codeEvents(evs, 4) {
		apps = append(apps, BootApp{Event: e.pos, Type: e.typ, Digests: digestsIn(e, banks)})
	}
	return apps
}

// grub collects GRUB's PCR 8 strings and PCR 9 files, when those PCRs are
// boot PCRs. checkEvents has already checked each string against its
// digest.
func grub(evs []event, banks []crypto.Hash, boot []int) *Grub {
	var (
		g          Grub
		found      bool
		cmdlinePos = -1
	)
	if slices.Contains(boot, 8) {
		for _, e := range measured(evs, 8) {
			prefix, text, ok := grubString(e.data)
			if !ok {
				if dataCheck(e.pcr, e.typ, e.data) == nil {
					g.UnreadEvents++
				}
				continue
			}
			found = true
			switch prefix {
			case grubPrefixCommand:
				g.Commands = append(g.Commands, text)
			case grubPrefixKernelCmdline:
				g.KernelCmdline, cmdlinePos = text, e.pos
			case grubPrefixModuleCmdline:
				g.ModuleCmdlines = append(g.ModuleCmdlines, text)
			}
		}
	}
	if slices.Contains(boot, 9) {
		for _, e := range codeEvents(evs, 9) {
			found = true
			path, _ := grubPath(e.data)
			g.Files = append(g.Files, GrubFile{Event: e.pos, Path: path, Digests: digestsIn(e, banks)})
		}
	}
	if !found && g.UnreadEvents == 0 {
		return nil
	}
	if f := strings.Fields(g.KernelCmdline); len(f) > 0 {
		for i := len(g.Files) - 1; i >= 0; i-- {
			if g.Files[i].Event < cmdlinePos && g.Files[i].Path != "" && sameGrubPath(g.Files[i].Path, f[0]) {
				k := g.Files[i]
				g.Kernel = &k
				break
			}
		}
	}
	return &g
}

// agentStart folds the firmware's events on the agent PCR in every bank of
// the log.
func agentStart(evs []event, logBanks []crypto.Hash, agent int, quoted map[crypto.Hash]map[int][]byte, banks []crypto.Hash) AgentStart {
	if agent < 0 {
		return AgentStart{PCR: NoAgentPCR}
	}
	fw := measured(evs, agent)
	a := AgentStart{PCR: agent, Events: len(fw), Start: make(map[crypto.Hash][]byte, len(logBanks)), Quoted: true}
	for _, h := range logBanks {
		v := resetValue(agent, h, 0)
		for _, e := range fw {
			d := h.New()
			d.Write(v)
			d.Write(e.digests[h])
			v = d.Sum(nil)
		}
		a.Start[h] = v
	}
	for _, h := range banks {
		if _, ok := quoted[h][agent]; !ok {
			a.Quoted = false
		}
	}
	return a
}

func bankNames(banks []crypto.Hash) string {
	names := make([]string, len(banks))
	for i, h := range banks {
		names[i] = bankName(h)
	}
	return strings.Join(names, ", ")
}
