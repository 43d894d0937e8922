package measure

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"

	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// Options configures Inspect. The zero value trusts no signer, so a signed
// artifact measures as UNKNOWNKEY: trust is never implied.
type Options struct {
	// Trust stands in for the kernel keyring the signature is checked
	// against. Nil means an empty keyring.
	Trust *cms.TrustStore
	// Load describes the load the measurement is made for. Nil for a
	// measurement outside a load (bpfattest inspect): no requester, no
	// loader context, no boot time, KernelCheckUnknown.
	Load *Load
	// Cache, when set, keeps the signature verdicts and loader analyses of
	// the artifacts measured with it, so that measuring the same signed
	// artifact against the same trust store again neither verifies its
	// signature nor analyses its loader again (every byte is still
	// hashed). The measurement is the same with or without it (package
	// documentation, "Cached verdicts and analyses"). Nil: every
	// measurement does everything.
	Cache *Cache
}

// Load is what the measurement of a load records besides the artifact: who
// asked, what the loader is handed, when, and whether the kernel checks the
// signature. The agent fills it in.
type Load struct {
	// Requester says who asked; nil when nobody said.
	Requester *Requester
	// Context builds the run-time context the loader will be handed for a
	// skeleton of nrMaps maps and nrProgs programs, or returns nil when the
	// counts are impossible. Inspect measures its SHA-256.
	Context func(nrMaps, nrProgs int) []byte
	// BootTimeNS is CLOCK_BOOTTIME of the request.
	BootTimeNS uint64
	// KernelVerifies says the kernel checks BPF signatures, so a signed
	// artifact's signature goes to the kernel with the load.
	KernelVerifies bool
}

// LoaderContext is the context handed to the loader at run time and the
// number of descriptors in it, where the loader writes back the maps and
// programs it created.
type LoaderContext struct {
	Bytes          []byte
	Maps, Programs int
}

// Inspection is everything Inspect learned about an artifact: the parsed
// loader layout, the signature result, the measurement to record and, for a
// load, the loader's context.
type Inspection struct {
	Artifact      *lskel.Artifact
	Layout        *lskel.Layout
	Signature     cms.Result
	Measurement   Measurement
	LoaderContext LoaderContext // zero outside a load

	// dataProblem says, in words, why the data link of a Hornet signature
	// is not LinkHolds; empty otherwise.
	dataProblem string
}

// SubmitSignature reports whether the load passes the artifact's
// signature to the kernel: it is signed and the kernel checks signatures.
func (i *Inspection) SubmitSignature() bool {
	return i.Measurement.KernelCheck == KernelCheckVerified
}

// Accepted reports whether the artifact is signed by a trusted signer and
// every link of its hash chain holds (or is bound by the kernel at load
// time). This is the agent's default load policy and `inspect`'s exit status.
func (i *Inspection) Accepted() bool {
	m := &i.Measurement
	if m.Verdict != cms.VerdictOK {
		return false
	}
	for _, l := range []Link{m.ExclLink, m.DataLink} {
		if l != LinkHolds && l != LinkKernelBound {
			return false
		}
	}
	return true
}

// Problems lists, in words, why Accepted is false (empty when it is true).
func (i *Inspection) Problems() []string {
	m := &i.Measurement
	var out []string
	if m.Verdict != cms.VerdictOK {
		p := "signature verdict " + m.Verdict.String()
		if i.Signature.Reason != "" {
			p += ": " + i.Signature.Reason
		}
		out = append(out, p)
	}
	if m.ExclLink == LinkBroken {
		out = append(out, "excl_prog_hash does not equal SHA-256 of the loader instructions: the kernel refuses the load (EACCES)")
	}
	switch {
	case i.dataProblem != "" && (m.DataLink == LinkBroken || m.DataLink == LinkAbsent):
		out = append(out, i.dataProblem)
	case m.DataLink == LinkBroken:
		out = append(out, "the data hash embedded in the loader does not equal the data map's hash: the loader refuses to run (EINVAL)")
	case m.Scheme != SchemeUnsigned && m.DataLink == LinkAbsent:
		out = append(out, "signed loader carries no data hash: the data map and the programs in it are not covered by the signature")
	}
	return out
}

// ErrNotAnalyzable wraps every failure to understand an artifact. The agent
// refuses to load what it cannot measure.
var ErrNotAnalyzable = errors.New("artifact cannot be measured")

// Inspect analyses the artifact, verifies its signature in userspace with the
// kernel's rules (and Hornet's, for a Hornet signature), checks every link of
// the hash chain, and builds the measurement, the whole of it: for a load
// (opts.Load) also the requester, the loader context, the boot time and
// whether the kernel checks the signature. It touches neither the kernel
// nor a TPM. An error means the artifact could not be measured at all; a bad
// signature or a broken chain is a verdict, not an error.
func Inspect(a *lskel.Artifact, opts Options) (*Inspection, error) {
	if a == nil {
		return nil, fmt.Errorf("%w: no artifact", ErrNotAnalyzable)
	}
	trust := opts.Trust // nil is an empty keyring to package cms too
	m := Measurement{
		Name:         a.Name,
		Scheme:       SchemeUnsigned,
		KeyringID:    a.KeyringID,
		LoaderSHA256: sha256.Sum256(a.Insns),
	}

	// The signature is checked in line, after the data blob is hashed
	// (a Hornet verdict covers the data map's digest). It used to run on a
	// second goroutine while the blob was hashed: that hid ~40 µs of RSA
	// in wall time when a core was free, but waking the second thread and
	// its spinning cost about 100 µs of CPU per measurement, and a busy
	// agent is bound by CPU, not by the wall time of one load
	// (docs/benchmarks.md, "Measuring vs SHA-256").
	var (
		res    cms.Result
		signer *Signer
		key    cacheKey
		cached pending
	)
	if len(a.Signature) == 0 {
		res = cms.Result{Verdict: cms.VerdictUnsigned, Reason: "the artifact carries no signature"}
	} else {
		sigSum := sha256.Sum256(a.Signature)
		m.SignatureSHA256 = clone(sigSum[:])
		key = verdictKeyOf(trust, sigSum, m.LoaderSHA256)
		if opts.Cache != nil {
			cached = opts.Cache.lookup(key)
		}
		if cached.entry != nil {
			m.Scheme = cached.entry.scheme
		} else {
			m.Scheme = schemeOf(a)
		}
	}
	layout, err := analyze(a, m.LoaderSHA256, opts.Cache)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAnalyzable, err)
	}
	m.Generation = layout.Generation
	m.DataSHA256 = dataMapHash(a.Data, layout)
	m.HostOverrides = layout.HostOverrides
	if len(layout.EmbeddedDataHash) > 0 {
		m.EmbeddedDataHash = clone(layout.EmbeddedDataHash)
	}
	if len(a.ExclHash) > 0 {
		m.ExclHash = clone(a.ExclHash)
	}

	if m.Scheme != SchemeUnsigned {
		hit := false
		if opts.Cache != nil {
			res, signer, hit = opts.Cache.use(cached, m.DataSHA256)
		}
		if !hit {
			// A miss, or a Hornet verdict cached for another data map.
			res = verifySignature(a, m.Scheme, trust)
			signer = signerOf(res)
			if opts.Cache != nil {
				opts.Cache.putVerdict(key, m.Scheme, m.DataSHA256, res, signer, trust)
			}
		}
		m.Signer = signer
	}
	m.Verdict = res.Verdict

	m.ExclLink = exclLink(a, m.LoaderSHA256)
	var dataProblem string
	m.DataLink, dataProblem = dataLink(layout, m.DataSHA256, m.Scheme, res)

	if len(layout.Programs) > 0 {
		m.Programs = make([]ProgramDigest, 0, len(layout.Programs))
	}
	for i := range layout.Programs {
		p := &layout.Programs[i]
		tag, unknown := p.PredictTag()
		m.Programs = append(m.Programs, ProgramDigest{
			Name:               p.Name,
			Type:               p.Type,
			ExpectedAttachType: p.ExpectedAttachType,
			InsnCount:          uint32(p.InsnCount),
			Digest:             p.Digest,
			License:            p.License,
			KernelTag:          tag,
			TagUnpredictable:   unknown,
		})
	}
	in := &Inspection{Artifact: a, Layout: layout, Signature: res, Measurement: m, dataProblem: dataProblem}
	if opts.Load != nil {
		if err := in.measureLoad(opts.Load); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// measureLoad adds what the load contributes to the measurement.
func (i *Inspection) measureLoad(l *Load) error {
	nrMaps, nrProgs := i.Layout.CtxShape()
	ctx := l.Context(nrMaps, nrProgs)
	if ctx == nil {
		return fmt.Errorf("%w: no loader context for %d maps and %d programs", ErrNotAnalyzable, nrMaps, nrProgs)
	}
	i.LoaderContext = LoaderContext{Bytes: ctx, Maps: nrMaps, Programs: nrProgs}
	m := &i.Measurement
	sum := sha256.Sum256(ctx)
	m.LoaderContextSHA256 = sum[:]
	m.Requester = l.Requester
	m.BootTimeNS = l.BootTimeNS
	switch {
	case !i.Artifact.Signed():
		m.KernelCheck = KernelCheckNotSubmitted
	case l.KernelVerifies:
		m.KernelCheck = KernelCheckVerified
	default:
		m.KernelCheck = KernelCheckUnavailable
	}
	return nil
}

// analyze is lskel.Analyze of the artifact's loader over its data blob,
// through the cache when there is one: the blob is hashed first (once: the
// digest is the Layout's DataSHA256), and a loader and blob analysed
// before are not analysed again.
func analyze(a *lskel.Artifact, loader [32]byte, c *Cache) (*lskel.Layout, error) {
	if c == nil {
		return lskel.Analyze(a.Insns, a.Data)
	}
	dataSum := sha256.Sum256(a.Data)
	if l := c.analysis(loader, dataSum, a.Data); l != nil {
		return l, nil
	}
	l, err := lskel.AnalyzeHashed(a.Insns, a.Data, dataSum)
	if err != nil {
		return nil, err
	}
	c.putAnalysis(loader, dataSum, l)
	return l, nil
}

// verifySignature checks a signed artifact's signature with the rules of its
// scheme.
func verifySignature(a *lskel.Artifact, scheme Scheme, trust *cms.TrustStore) cms.Result {
	if scheme == SchemeHornet {
		return cms.VerifyHornet(a.Signature, a.Insns, [][]byte{paddedMapValue(a.Data)}, trust)
	}
	return cms.Verify(a.Signature, a.Insns, trust)
}

// schemeOf says how the artifact is signed, from the signature alone.
func schemeOf(a *lskel.Artifact) Scheme {
	switch {
	case len(a.Signature) == 0:
		return SchemeUnsigned
	case cms.IsHornet(a.Signature):
		return SchemeHornet
	}
	return SchemeKernel
}

func signerOf(res cms.Result) *Signer {
	s := &Signer{ID: res.SignerID}
	if c := res.Signer; c != nil {
		s.CertSHA256 = certDigest(c)
		s.Subject = c.Subject.String()
		s.KeyID = clone(c.SubjectKeyId)
	}
	if s.empty() {
		return nil
	}
	return s
}

func certDigest(c *x509.Certificate) []byte {
	d := sha256.Sum256(c.Raw)
	return d[:]
}

func exclLink(a *lskel.Artifact, loader [32]byte) Link {
	if len(a.ExclHash) == 0 {
		return LinkAbsent
	}
	if bytes.Equal(a.ExclHash, loader[:]) {
		return LinkHolds
	}
	return LinkBroken
}

// dataLink is the state of the link that binds the data map to what is
// signed, and for a Hornet signature whose link does not hold, why. The
// link is the loader's embedded data hash when it carries one; for a Hornet
// signature without one, the signed map hash of fd_array index 0
// (hornetDataLink); for a kernel-scheme signature over a loader of libbpf
// debb5e82 or later, the kernel at load time.
func dataLink(l *lskel.Layout, data [32]byte, scheme Scheme, sig cms.Result) (Link, string) {
	switch {
	case len(l.EmbeddedDataHash) > 0 && bytes.Equal(l.EmbeddedDataHash, data[:]):
		return LinkHolds, ""
	case len(l.EmbeddedDataHash) > 0:
		return LinkBroken, ""
	case scheme == SchemeHornet:
		return hornetDataLink(sig, l.UsedMaps, data)
	case scheme != SchemeUnsigned && (l.Generation == lskel.GenerationKernelCheck || l.Generation == lskel.GenerationIndeterminate):
		// libbpf debb5e82 and later: the kernel binds the frozen map
		// through fd_array_cnt at load time; nothing to check here.
		return LinkKernelBound, ""
	}
	return LinkAbsent, ""
}

// hornetDataLink decides whether a Hornet signature binds the data map of a
// loader that carries no data hash of its own, exactly as the Hornet LSM
// (v7, security/hornet/hornet_lsm.c) would let it load and run:
//
//   - at BPF_PROG_LOAD, every entry of the signed map-hash attribute with a
//     hash is compared with the frozen map at fd_array[index] (a light
//     skeleton passes one map there: index 0, the data map), and each
//     match is kept; entries with an empty hash are skipped. VerifyHornet
//     models this: OK, UNEXPECTED (a hash differs) or FAULT (no map).
//   - at every BPF_PROG_RUN from userspace, Hornet re-hashes each frozen map
//     the loader uses (prog->aux->used_maps) and refuses the run (EPERM)
//     unless each is among the kept hashes and their number equals the
//     number of maps it covered.
//
// So the data map is bound, and the loader runs, only when the verdict is
// OK, the attribute has exactly one entry with a hash, for index 0, equal
// to the data map's hash, and the loader uses exactly that map. A hash for
// index 0 that differs is LinkBroken (the verdict is UNEXPECTED). Anything
// else is LinkAbsent with the reason: an attribute without a hash for index
// 0 leaves the data map unchecked; more than one kept hash, or other maps
// used, make Hornet refuse BPF_PROG_RUN.
func hornetDataLink(sig cms.Result, usedMaps []int, data [32]byte) (Link, string) {
	if sig.Verdict != cms.VerdictOK && sig.Verdict != cms.VerdictUnexpected {
		return LinkAbsent, "" // the verdict says why
	}
	kept, covers := 0, false
	for _, h := range sig.MapHashes {
		if len(h.SHA256) == 0 {
			continue
		}
		kept++
		if h.Index != 0 {
			continue
		}
		if !bytes.Equal(h.SHA256, data[:]) {
			return LinkBroken, fmt.Sprintf("the Hornet map hash signed for fd_array index 0 is %x, not the data map's hash %x: Hornet reports UNEXPECTED", h.SHA256, data)
		}
		covers = true
	}
	switch {
	case sig.Verdict != cms.VerdictOK:
		return LinkAbsent, ""
	case !covers:
		return LinkAbsent, "the Hornet map-hash attribute has no hash for fd_array index 0, the data map, and the loader carries no data hash: the data map and the programs in it are not covered by the signature"
	case kept != 1:
		return LinkAbsent, fmt.Sprintf("the Hornet map-hash attribute has %d hashes for the loader's one map: Hornet refuses BPF_PROG_RUN (EPERM)", kept)
	case len(usedMaps) == 0:
		return LinkAbsent, "the loader uses no map, so Hornet finds no map for its signed hash at BPF_PROG_RUN and refuses it (EPERM)"
	case len(usedMaps) != 1 || usedMaps[0] != 0:
		return LinkAbsent, fmt.Sprintf("the loader uses maps %v (-1: by file descriptor), not just its data map (fd_array index 0): what Hornet decides at BPF_PROG_RUN depends on maps outside the artifact", usedMaps)
	}
	return LinkHolds, ""
}

// MapHash returns the hash the kernel computes over the frozen single-entry
// ARRAY map that holds value (bpf_map_info.hash): SHA-256 over the value
// padded with zeros to a multiple of 8 bytes.
func MapHash(value []byte) [32]byte {
	h := sha256.New()
	writeMapValue(h, value)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func writeMapValue(h hash.Hash, value []byte) {
	h.Write(value)
	var zero [8]byte
	if r := len(value) % 8; r != 0 {
		h.Write(zero[:8-r])
	}
}

// paddedMapValue returns the bytes the kernel hashes for a single-entry
// array map holding value: value zero-padded to a multiple of 8.
func paddedMapValue(value []byte) []byte {
	if len(value)%8 == 0 {
		return value
	}
	out := make([]byte, len(value)+8-len(value)%8)
	copy(out, value)
	return out
}

// dataMapHash returns the kernel's hash of the data map, reusing the digest
// lskel.Analyze already computed when no padding is involved, so the data blob is
// hashed once per measurement.
func dataMapHash(data []byte, l *lskel.Layout) [32]byte {
	if len(data)%8 == 0 {
		return l.DataSHA256
	}
	return MapHash(data)
}
