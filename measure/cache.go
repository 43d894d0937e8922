package measure

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"sync"

	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// Default bounds of a Cache (CacheLimits).
const (
	DefaultCacheEntries = 256
	DefaultCacheBytes   = 1 << 20
)

// CacheLimits bounds a Cache. A zero field takes its default
// (DefaultCacheEntries, DefaultCacheBytes).
type CacheLimits struct {
	// Entries is the most entries (verdicts and loader analyses) kept.
	Entries int
	// Bytes is the most memory the entries hold, as estimated by the
	// cache: for a verdict, the signer certificate parsed out of a
	// signature (not one of the trust store's, which the store holds
	// anyway), the words of the verdict and the signer facts; for an
	// analysis, the Layout without the blob; and a fixed overhead per
	// entry. An entry larger than Bytes is not kept.
	Bytes int64
}

// Cache keeps what measuring an artifact again can reuse, so that
// measuring the same signed artifact again does not repeat the signature
// verification (RSA, certificate chain, trust lookup), the signer's
// certificate digest and name, or the analysis of its loader
// (lskel.Analyze); every byte of the artifact is still hashed. A
// measurement made with a cache is byte for byte the one made without it;
// why that is so, and what keeps an entry from being used, is in the
// package documentation ("Cached verdicts and analyses").
//
// A cache is bounded by CacheLimits and drops the least recently used
// entry first. It is safe for concurrent use. It is meant to be shared by
// the measurements of one agent (Options.Cache); no cache is shared
// between processes or kept on disk.
type Cache struct {
	limits CacheLimits

	mu sync.Mutex
	// Guarded by mu:
	entries  map[cacheKey]*list.Element // value: *cacheEntry
	lru      list.List                  // front: most recently used
	bytes    int64
	verdicts CacheCounts
	layouts  CacheCounts
}

// NewCache returns an empty cache bounded by limits (zero fields: the
// defaults).
func NewCache(limits CacheLimits) *Cache {
	if limits.Entries <= 0 {
		limits.Entries = DefaultCacheEntries
	}
	if limits.Bytes <= 0 {
		limits.Bytes = DefaultCacheBytes
	}
	return &Cache{limits: limits, entries: make(map[cacheKey]*list.Element)}
}

// CacheStats says what a cache holds and how often it answered.
type CacheStats struct {
	Entries  int
	Bytes    int64
	Verdicts CacheCounts // signature verdicts
	Layouts  CacheCounts // loader analyses
}

// CacheCounts counts the lookups of one kind of entry.
type CacheCounts struct {
	Hits, Misses uint64
}

// Stats returns the cache's current size and its hit and miss counts.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: len(c.entries), Bytes: c.bytes, Verdicts: c.verdicts, Layouts: c.layouts}
}

// cacheKey names an entry. A verdict's key holds everything a signature
// verdict is a function of (see "Cached verdicts and analyses" in the
// package documentation): the trust store's identity, SHA-256 of the CMS
// blob and SHA-256 of the signed content, the loader's instructions. The
// data map's hash, which a Hornet verdict also depends on, is kept in the
// entry and compared on every use: one Hornet signature has one entry. An
// analysis's key holds SHA-256 of the loader's instructions and of the
// data blob, all lskel.Analyze reads.
type cacheKey struct {
	kind    entryKind
	a, b, c [sha256.Size]byte
}

type entryKind uint8

const (
	verdictEntry entryKind = iota + 1
	layoutEntry
)

func verdictKeyOf(trust *cms.TrustStore, signature, content [sha256.Size]byte) cacheKey {
	return cacheKey{kind: verdictEntry, a: trust.Identity(), b: signature, c: content}
}

func layoutKeyOf(loader, data [sha256.Size]byte) cacheKey {
	return cacheKey{kind: layoutEntry, a: loader, b: data}
}

// cacheEntry is a verdict (with its scheme, data map hash and signer
// facts) or a Layout. Nothing in it aliases a caller's bytes, it is never
// changed once in the cache, and what it holds is copied out on every use.
type cacheEntry struct {
	key  cacheKey
	size int64

	// A verdict:
	// scheme is the signature's scheme (schemeOf), a function of its
	// bytes: kept so that a hit need not parse the signature again.
	scheme Scheme
	// mapSHA256 is the data map's hash the Hornet verdict was reached for
	// (zero for the kernel scheme, whose verdict does not depend on it).
	mapSHA256 [sha256.Size]byte
	res       cms.Result
	signer    *Signer

	// An analysis, with Program.Insns nil.
	layout *lskel.Layout
}

// pending is a lookup of a verdict made before the data map's hash is
// known.
type pending struct {
	key   cacheKey
	entry *cacheEntry // nil: a miss
}

// lookup returns the entry for k, if any, without counting a hit or a miss
// (use decides which it was).
func (c *Cache) lookup(k cacheKey) pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := pending{key: k}
	if el, ok := c.entries[k]; ok {
		p.entry = el.Value.(*cacheEntry)
	}
	return p
}

// use returns a copy of the pending verdict and signer if it was reached
// for the data map hash mapSum (ignored for the kernel scheme), counting a
// hit; otherwise ok is false and a miss is counted.
func (c *Cache) use(p pending, mapSum [sha256.Size]byte) (res cms.Result, signer *Signer, ok bool) {
	e := p.entry
	hit := e != nil && (e.scheme != SchemeHornet || e.mapSHA256 == mapSum)
	c.mu.Lock()
	if hit {
		c.verdicts.Hits++
		c.touch(p.key, e)
	} else {
		c.verdicts.Misses++
	}
	c.mu.Unlock()
	if !hit {
		return cms.Result{}, nil, false
	}
	return copyResult(e.res), e.signer.clone(), true
}

// touch marks e, the entry of k, as just used, if it is still in the
// cache; c.mu is held.
func (c *Cache) touch(k cacheKey, e *cacheEntry) {
	if el, live := c.entries[k]; live && el.Value == e {
		c.lru.MoveToFront(el)
	}
}

// putVerdict keeps the verdict res (and the signer facts derived from it)
// of a signature of the scheme for k and the data map hash mapSum,
// replacing what k had.
func (c *Cache) putVerdict(k cacheKey, scheme Scheme, mapSum [sha256.Size]byte, res cms.Result, signer *Signer, trust *cms.TrustStore) {
	own, parsed, ok := ownResult(res, trust)
	if !ok {
		return
	}
	e := &cacheEntry{key: k, scheme: scheme, res: own, signer: signer.clone()}
	if scheme == SchemeHornet {
		e.mapSHA256 = mapSum
	}
	e.size = e.estimate(parsed)
	c.put(e)
}

// analysis returns the Layout of the loader and data blob whose digests
// are loader and dataSum, with its programs' instructions slices of data
// (which must hold those bytes), or nil, counting a hit or a miss.
func (c *Cache) analysis(loader, dataSum [sha256.Size]byte, data []byte) *lskel.Layout {
	k := layoutKeyOf(loader, dataSum)
	c.mu.Lock()
	var e *cacheEntry
	if el, ok := c.entries[k]; ok {
		e = el.Value.(*cacheEntry)
		c.lru.MoveToFront(el)
		c.layouts.Hits++
	} else {
		c.layouts.Misses++
	}
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.layout.CloneFor(data)
}

// putAnalysis keeps l, the Layout of the loader and data blob whose
// digests are loader and dataSum.
func (c *Cache) putAnalysis(loader, dataSum [sha256.Size]byte, l *lskel.Layout) {
	e := &cacheEntry{key: layoutKeyOf(loader, dataSum), layout: l.CloneFor(nil)}
	e.size = e.estimate(false)
	c.put(e)
}

// put adds e, replacing the entry of its key, and drops the least recently
// used entries until the cache is within its limits.
func (c *Cache) put(e *cacheEntry) {
	if e.size > c.limits.Bytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.key]; ok {
		c.remove(el)
	}
	c.entries[e.key] = c.lru.PushFront(e)
	c.bytes += e.size
	for len(c.entries) > c.limits.Entries || c.bytes > c.limits.Bytes {
		c.remove(c.lru.Back())
	}
}

// remove drops one entry; c.mu is held.
func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
	c.bytes -= e.size
}

// entryOverhead estimates what an entry holds besides its variable parts:
// the entry, its list element and map slot, the Result and Signer structs.
const entryOverhead = 512

// estimate is the memory the entry holds, for CacheLimits.Bytes. A
// certificate parsed out of a signature (ownCert) is counted at twice its
// DER (the DER and the parsed fields); the trust store's certificates are
// the store's, not the cache's. Sizes of structures are rounded up.
func (e *cacheEntry) estimate(ownCert bool) int64 {
	n := int64(entryOverhead)
	r := &e.res
	if ownCert {
		n += 2 * int64(len(r.Signer.Raw))
	}
	n += int64(len(r.SignerID) + len(r.DigestAlgorithm) + len(r.Errno) + len(r.Reason))
	for _, h := range r.MapHashes {
		n += 32 + int64(len(h.SHA256))
	}
	if s := e.signer; s != nil {
		n += int64(len(s.CertSHA256) + len(s.Subject) + len(s.ID) + len(s.KeyID))
	}
	if l := e.layout; l != nil {
		n += 512 + int64(len(l.EmbeddedDataHash)) + 8*int64(len(l.HashInsns)+len(l.Helpers)+len(l.UsedMaps)+len(l.UntrackedStores)) +
			48*int64(len(l.Overrides)) + 32*int64(len(l.Calls)) + 16*int64(len(l.CtxReads)+len(l.CtxWrites))
		for _, m := range l.Maps {
			n += 112 + int64(len(m.Name))
		}
		for _, p := range l.Programs {
			n += 256 + int64(len(p.Name)+len(p.License)) + 40*int64(len(p.RelocSlots))
		}
	}
	return n
}

// ownResult returns a copy of res that aliases none of the caller's bytes,
// and whether its signer certificate is the copy's own: a certificate
// parsed out of the signature (whose DER is a slice of it) is parsed again
// from a copy, the Hornet map hashes are copied. The trust store's
// certificates are kept as they are: the store is immutable. ok is false
// if the certificate does not parse again (it cannot: it parsed from the
// same bytes once); the verdict is then not kept.
func ownResult(res cms.Result, trust *cms.TrustStore) (_ cms.Result, ownCert, ok bool) {
	out := copyResult(res)
	c := res.Signer
	if c == nil || slices.Contains(trust.Certificates(), c) {
		return out, false, true
	}
	own, err := x509.ParseCertificate(bytes.Clone(c.Raw))
	if err != nil {
		return cms.Result{}, false, false
	}
	out.Signer = own
	return out, true, true
}

// copyResult copies res so that the copy shares no mutable slice with it
// (the signer certificate is shared: certificates are not modified).
func copyResult(res cms.Result) cms.Result {
	if res.MapHashes != nil {
		hs := make([]cms.MapHash, len(res.MapHashes))
		for i, h := range res.MapHashes {
			hs[i] = cms.MapHash{Index: h.Index, SHA256: cloneOrNil(h.SHA256)}
		}
		res.MapHashes = hs
	}
	return res
}

// clone copies the signer facts; nil stays nil.
func (s *Signer) clone() *Signer {
	if s == nil {
		return nil
	}
	out := *s
	out.CertSHA256 = cloneOrNil(s.CertSHA256)
	out.KeyID = cloneOrNil(s.KeyID)
	return &out
}

// cloneOrNil copies b, keeping nil and empty apart.
func cloneOrNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
