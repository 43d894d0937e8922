package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runInspect(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("inspect", stderr,
		"usage: bpfattest inspect FILE [--trust DIR|FILE]... [--obj PROG.bpf.o] [--json]",
		"\nFILE is a bpftool .lskel.h header or a bpfattest bundle. Exit 0 only when the artifact is",
		"signed by a trusted signer and its hash chain holds; 1 otherwise; 2 on unreadable input.")
	var trust multiFlag
	fs.Var(&trust, "trust", "trusted signer certificates: a DER/PEM file or a directory of them (repeatable); stands in for the kernel keyring")
	obj := fs.String("obj", "", "the .bpf.o the artifact was generated from, to cross-check the programs in the data blob")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	path := fs.Arg(0)
	src, err := boundedfile.ReadFile(path, lskel.MaxHeaderSize)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest inspect: %v\n", err)
		return exitUsage
	}
	art, err := lskel.Load(src)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest inspect: %s: %v\n", path, err)
		return exitUsage
	}
	var store *cms.TrustStore
	if len(trust) > 0 {
		if store, err = cms.LoadTrust(trust...); err != nil {
			fmt.Fprintf(stderr, "bpfattest inspect: trust: %v\n", err)
			return exitUsage
		}
		for _, w := range store.Warnings() {
			fmt.Fprintf(stderr, "bpfattest inspect: warning: trust: %s\n", w)
		}
	}
	insp, err := measure.Inspect(art, measure.Options{Trust: store})
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest inspect: %s: %v\n", path, err)
		return exitUsage
	}
	var cmp *lskel.ELFComparison
	if *obj != "" {
		f, err := os.Open(*obj)
		if err != nil {
			fmt.Fprintf(stderr, "bpfattest inspect: %v\n", err)
			return exitUsage
		}
		cmp, err = lskel.CompareELF(insp.Layout, f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "bpfattest inspect: --obj %s: %v\n", *obj, err)
			return exitUsage
		}
	}
	report, err := newInspectReport(path, insp, cmp)
	if err != nil {
		fmt.Fprintf(stderr, "bpfattest inspect: %v\n", err)
		return exitUsage
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			fmt.Fprintf(stderr, "bpfattest inspect: %v\n", err)
			return exitUsage
		}
	} else {
		report.writeText(stdout)
	}
	if !report.Accepted {
		return exitFailed
	}
	return exitOK
}

// reorderFlags lets flags follow the positional argument ("inspect FILE
// --trust X"), as the documented usage puts them.
func reorderFlags(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(flags, pos...)
}

type inspectReport struct {
	File              string          `json:"file"`
	Name              string          `json:"name"`
	Format            string          `json:"format"`
	Accepted          bool            `json:"accepted"`
	Problems          []string        `json:"problems,omitempty"`
	Scheme            measure.Scheme  `json:"scheme"`
	Generation        string          `json:"loader_generation"`
	Verdict           cms.Verdict     `json:"verdict"`
	VerdictReason     string          `json:"verdict_reason,omitempty"`
	Signer            *signerReport   `json:"signer,omitempty"`
	KeyringID         int32           `json:"keyring_id"`
	Loader            digestReport    `json:"loader"`
	Data              digestReport    `json:"data_map"`
	Signature         *digestReport   `json:"signature,omitempty"`
	ExclHash          string          `json:"excl_hash,omitempty"`
	EmbeddedDataHash  string          `json:"embedded_data_hash,omitempty"`
	ExclLink          measure.Link    `json:"excl_hash_link"`
	DataLink          measure.Link    `json:"data_hash_link"`
	DataLinkBasis     string          `json:"data_hash_link_basis"`
	HornetMapHashes   []string        `json:"hornet_map_hashes,omitempty"`
	HostOverrides     bool            `json:"host_overrides"`
	Programs          []programReport `json:"programs"`
	Maps              []mapReport     `json:"maps"`
	ELF               []elfReport     `json:"elf_comparison,omitempty"`
	MeasurementSHA256 string          `json:"measurement_sha256"`
	Measurement       []byte          `json:"measurement"`
}

type signerReport struct {
	ID         string `json:"id"`
	Subject    string `json:"subject,omitempty"`
	CertSHA256 string `json:"cert_sha256,omitempty"`
}

type digestReport struct {
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
}

type programReport struct {
	Name       string       `json:"name"`
	Type       string       `json:"type"`
	InsnOffset int          `json:"insn_offset"`
	InsnCount  int          `json:"insn_count"`
	SHA256     string       `json:"sha256"`
	RelocSlots []slotReport `json:"relocation_slots"`
}

type slotReport struct {
	Insn int    `json:"insn"`
	Kind string `json:"kind"`
}

type mapReport struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	KeySize    uint32 `json:"key_size"`
	ValueSize  uint32 `json:"value_size"`
	MaxEntries uint32 `json:"max_entries"`
	Frozen     bool   `json:"frozen"`
}

type elfReport struct {
	Program             string `json:"program"`
	Section             string `json:"section"`
	Function            string `json:"function"`
	TypeMatches         bool   `json:"type_matches"`
	DifferingInsns      []int  `json:"differing_insns"`
	OnlyRelocationSlots bool   `json:"only_relocation_slots"`
}

func newInspectReport(path string, insp *measure.Inspection, cmp *lskel.ELFComparison) (*inspectReport, error) {
	m := &insp.Measurement
	enc, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	md := sha256.Sum256(enc)
	r := &inspectReport{
		File:              path,
		Name:              m.Name,
		Format:            insp.Artifact.Source.String(),
		Accepted:          insp.Accepted(),
		Problems:          insp.Problems(),
		Scheme:            m.Scheme,
		Generation:        m.Generation.String(),
		Verdict:           m.Verdict,
		KeyringID:         m.KeyringID,
		Loader:            digestReport{hex.EncodeToString(m.LoaderSHA256[:]), len(insp.Artifact.Insns)},
		Data:              digestReport{hex.EncodeToString(m.DataSHA256[:]), len(insp.Artifact.Data)},
		ExclHash:          hex.EncodeToString(m.ExclHash),
		EmbeddedDataHash:  hex.EncodeToString(m.EmbeddedDataHash),
		ExclLink:          m.ExclLink,
		DataLink:          m.DataLink,
		DataLinkBasis:     m.DataLinkBasis(),
		HostOverrides:     m.HostOverrides,
		MeasurementSHA256: hex.EncodeToString(md[:]),
		Measurement:       enc,
	}
	if m.Verdict != cms.VerdictOK {
		r.VerdictReason = insp.Signature.Reason
	}
	for _, h := range insp.Signature.MapHashes {
		r.HornetMapHashes = append(r.HornetMapHashes, h.String())
	}
	if len(m.SignatureSHA256) > 0 {
		r.Signature = &digestReport{hex.EncodeToString(m.SignatureSHA256), len(insp.Artifact.Signature)}
	}
	if s := m.Signer; s != nil {
		r.Signer = &signerReport{ID: s.ID, Subject: s.Subject, CertSHA256: hex.EncodeToString(s.CertSHA256)}
	}
	for _, p := range insp.Layout.Programs {
		r.Programs = append(r.Programs, programReport{
			Name: p.Name, Type: lskel.ProgTypeName(p.Type), InsnOffset: p.InsnOffset, InsnCount: p.InsnCount,
			SHA256: hex.EncodeToString(p.Digest[:]), RelocSlots: slotsOf(p.RelocSlots),
		})
	}
	for _, mp := range insp.Layout.Maps {
		r.Maps = append(r.Maps, mapReport{
			Name: mp.Name, Type: lskel.MapTypeName(mp.Type), KeySize: mp.KeySize, ValueSize: mp.ValueSize,
			MaxEntries: mp.MaxEntries, Frozen: mp.Frozen,
		})
	}
	if cmp != nil {
		for _, p := range cmp.Programs {
			r.ELF = append(r.ELF, elfReport{
				Program: p.Program, Section: p.Section, Function: p.Function, TypeMatches: p.TypeMatches,
				DifferingInsns: nonNil(p.Differences), OnlyRelocationSlots: p.OnlyRelocationSlots,
			})
			switch {
			case !p.Matched:
				r.Accepted = false
				r.Problems = append(r.Problems, fmt.Sprintf("program %s has no counterpart in the ELF object", p.Program))
			case !p.OnlyRelocationSlots || !p.TypeMatches:
				r.Accepted = false
				r.Problems = append(r.Problems, fmt.Sprintf("program %s differs from its ELF function %s (section %s) outside relocation slots or in type",
					p.Program, p.Function, p.Section))
			}
		}
	}
	return r, nil
}

func slotsOf(slots []lskel.RelocSlot) []slotReport {
	out := []slotReport{}
	for _, s := range slots {
		out = append(out, slotReport{Insn: s.Insn, Kind: s.Kind.String()})
	}
	return out
}

func nonNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}

func (r *inspectReport) writeText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	verdict := "ACCEPTED"
	if !r.Accepted {
		verdict = "REFUSED"
	}
	fmt.Fprintf(tw, "artifact\t%s (%s, %s)\n", r.Name, r.Format, r.File)
	fmt.Fprintf(tw, "result\t%s\n", verdict)
	for _, p := range r.Problems {
		fmt.Fprintf(tw, "  problem\t%s\n", p)
	}
	fmt.Fprintf(tw, "scheme\t%s\n", r.Scheme)
	fmt.Fprintf(tw, "loader generation\t%s\n", r.Generation)
	v := r.Verdict.String()
	if r.VerdictReason != "" {
		v += " (" + r.VerdictReason + ")"
	}
	fmt.Fprintf(tw, "signature verdict\t%s\n", v)
	if s := r.Signer; s != nil {
		fmt.Fprintf(tw, "signer\t%s\n", s.ID)
		if s.Subject != "" {
			fmt.Fprintf(tw, "  subject\t%s\n", s.Subject)
			fmt.Fprintf(tw, "  certificate\tsha256:%s\n", s.CertSHA256)
		}
	}
	if r.Scheme != measure.SchemeUnsigned {
		fmt.Fprintf(tw, "keyring id\t%d\n", r.KeyringID)
	}
	fmt.Fprintf(tw, "loader\tsha256:%s\t%d insns\n", r.Loader.SHA256, r.Loader.Size/8)
	fmt.Fprintf(tw, "data map\tsha256:%s\t%d bytes\n", r.Data.SHA256, r.Data.Size)
	if r.Signature != nil {
		fmt.Fprintf(tw, "signature\tsha256:%s\t%d bytes\n", r.Signature.SHA256, r.Signature.Size)
	}
	fmt.Fprintf(tw, "chain: excl_prog_hash = SHA-256(loader)\t%s\n", r.ExclLink)
	fmt.Fprintf(tw, "chain: %s\t%s\n", r.DataLinkBasis, r.DataLink)
	if len(r.HornetMapHashes) > 0 {
		fmt.Fprintf(tw, "hornet map hashes\t%s\n", strings.Join(r.HornetMapHashes, " "))
	}
	if r.HostOverrides {
		fmt.Fprintf(tw, "host overrides\tthe loader takes map sizes or initial values from the host at run time (not signed)\n")
	}
	fmt.Fprintf(tw, "measurement\tsha256:%s\n", r.MeasurementSHA256)
	tw.Flush()

	fmt.Fprintln(w, "\nprograms in the data blob:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tname\ttype\tinsns\tsha256\trelocation slots")
	for i, p := range r.Programs {
		var slots []string
		for _, s := range p.RelocSlots {
			slots = append(slots, fmt.Sprintf("%d:%s", s.Insn, s.Kind))
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%s\t%s\n", i, p.Name, p.Type, p.InsnCount, p.SHA256, strings.Join(slots, " "))
	}
	tw.Flush()
	if len(r.Maps) > 0 {
		fmt.Fprintln(w, "\nmaps the loader creates:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  name\ttype\tkey\tvalue\tentries\tfrozen")
		for _, m := range r.Maps {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%v\n", m.Name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Frozen)
		}
		tw.Flush()
	}
	if len(r.ELF) > 0 {
		fmt.Fprintln(w, "\ncomparison with the ELF object:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, e := range r.ELF {
			state := "matches outside relocation slots"
			if !e.OnlyRelocationSlots {
				state = "DIFFERS outside relocation slots"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\tdiffering insns %v\n", e.Program, e.Section, state, e.DifferingInsns)
		}
		tw.Flush()
	}
}

var errNoKey = errors.New("no private key found")
