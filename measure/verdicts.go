package measure

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"sync"

	"github.com/bpfattest/bpfattest/measure/cms"
)

// Default bounds of a VerdictCache (VerdictCacheLimits).
const (
	DefaultVerdictCacheEntries = 256
	DefaultVerdictCacheBytes   = 4 << 20
)

// VerdictCacheLimits bounds a VerdictCache. A zero field takes its
// default (DefaultVerdictCacheEntries, DefaultVerdictCacheBytes).
type VerdictCacheLimits struct {
	// Entries is the most verdicts kept.
	Entries int
	// Bytes is the most memory the kept verdicts hold, as estimated by
	// the cache: the signer certificate parsed out of a signature (not one
	// of the trust store's, which the store holds anyway), the words of the
	// verdict, the signer facts and a fixed overhead per entry. A verdict
	// larger than Bytes is not kept.
	Bytes int64
}

// VerdictCache keeps the signature verdicts of artifacts measured before,
// so that measuring the same signed artifact again does not repeat the
// signature verification (RSA, certificate chain, trust lookup) and the
// signer's certificate digest and name. A measurement made with a cached
// verdict is byte for byte the one made without it; why that is so, and
// what keeps an entry from being used, is in the package documentation
// ("Cached verdicts").
//
// A cache is bounded by VerdictCacheLimits and drops the least recently
// used verdict first. It is safe for concurrent use. It is meant to be
// shared by the measurements of one agent (Options.Verdicts); no cache is
// shared between processes or kept on disk.
type VerdictCache struct {
	limits VerdictCacheLimits

	mu sync.Mutex
	// Guarded by mu:
	entries map[verdictKey]*list.Element // value: *verdictEntry
	lru     list.List                    // front: most recently used
	bytes   int64
	hits    uint64
	misses  uint64
}

// NewVerdictCache returns an empty cache bounded by limits (zero fields:
// the defaults).
func NewVerdictCache(limits VerdictCacheLimits) *VerdictCache {
	if limits.Entries <= 0 {
		limits.Entries = DefaultVerdictCacheEntries
	}
	if limits.Bytes <= 0 {
		limits.Bytes = DefaultVerdictCacheBytes
	}
	return &VerdictCache{limits: limits, entries: make(map[verdictKey]*list.Element)}
}

// VerdictCacheStats says what a cache holds and how often it answered.
type VerdictCacheStats struct {
	Entries      int
	Bytes        int64
	Hits, Misses uint64
}

// Stats returns the cache's current size and its hit and miss counts.
func (c *VerdictCache) Stats() VerdictCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return VerdictCacheStats{Entries: len(c.entries), Bytes: c.bytes, Hits: c.hits, Misses: c.misses}
}

// verdictKey names everything a signature verdict is a function of (see
// "Cached verdicts" in the package documentation). The data map's hash,
// which a Hornet verdict also depends on, is kept in the entry and
// compared on every use: one Hornet signature has one entry.
type verdictKey struct {
	trust     [sha256.Size]byte // cms.TrustStore.Identity
	signature [sha256.Size]byte // SHA-256 of the CMS blob
	content   [sha256.Size]byte // SHA-256 of the signed content: the loader's instructions
}

type verdictEntry struct {
	key verdictKey
	// scheme is the signature's scheme (schemeOf), a function of its
	// bytes: kept so that a hit need not parse the signature again.
	scheme Scheme
	// mapSHA256 is the data map's hash the Hornet verdict was reached for
	// (zero for the kernel scheme, whose verdict does not depend on it).
	mapSHA256 [sha256.Size]byte
	// res and signer are owned by the cache: nothing in them aliases a
	// caller's bytes, and they are copied out on every use.
	res    cms.Result
	signer *Signer
	size   int64
}

// pending is a lookup made before the data map's hash is known.
type pending struct {
	key   verdictKey
	entry *verdictEntry // nil: a miss
}

// lookup returns the entry for k, if any, without counting a hit or a miss
// (use decides which it was).
func (c *VerdictCache) lookup(k verdictKey) pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := pending{key: k}
	if el, ok := c.entries[k]; ok {
		p.entry = el.Value.(*verdictEntry)
	}
	return p
}

// use returns a copy of the pending entry's verdict and signer if it was
// reached for the data map hash mapSum (ignored for the kernel scheme),
// counting a hit; otherwise ok is false and a miss is counted.
func (c *VerdictCache) use(p pending, mapSum [sha256.Size]byte) (res cms.Result, signer *Signer, ok bool) {
	e := p.entry
	hit := e != nil && (e.scheme != SchemeHornet || e.mapSHA256 == mapSum)
	c.mu.Lock()
	if hit {
		c.hits++
		if el, live := c.entries[p.key]; live && el.Value == e {
			c.lru.MoveToFront(el)
		}
	} else {
		c.misses++
	}
	c.mu.Unlock()
	if !hit {
		return cms.Result{}, nil, false
	}
	return copyResult(e.res), e.signer.clone(), true
}

// put keeps the verdict res (and the signer facts derived from it) of a
// signature of the scheme for k and the data map hash mapSum, replacing
// what k had.
func (c *VerdictCache) put(k verdictKey, scheme Scheme, mapSum [sha256.Size]byte, res cms.Result, signer *Signer, trust *cms.TrustStore) {
	own, parsed, ok := ownResult(res, trust)
	if !ok {
		return
	}
	e := &verdictEntry{key: k, scheme: scheme, res: own, signer: signer.clone()}
	if scheme == SchemeHornet {
		e.mapSHA256 = mapSum
	}
	e.size = e.estimate(parsed)
	if e.size > c.limits.Bytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.remove(el)
	}
	c.entries[k] = c.lru.PushFront(e)
	c.bytes += e.size
	for len(c.entries) > c.limits.Entries || c.bytes > c.limits.Bytes {
		c.remove(c.lru.Back())
	}
}

// remove drops one entry; c.mu is held.
func (c *VerdictCache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*verdictEntry)
	delete(c.entries, e.key)
	c.bytes -= e.size
}

// verdictEntryOverhead estimates what an entry holds besides its variable
// parts: the entry, its list element and map slot, the Result and Signer
// structs.
const verdictEntryOverhead = 512

// estimate is the memory the entry holds, for VerdictCacheLimits.Bytes. A
// certificate parsed out of a signature (ownCert) is counted at twice its
// DER (the DER and the parsed fields); the trust store's certificates are
// the store's, not the cache's.
func (e *verdictEntry) estimate(ownCert bool) int64 {
	n := int64(verdictEntryOverhead)
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
