// Package measure builds the canonical measurement of a light skeleton that
// the agent logs and extends into the TPM before the loader runs, and
// encodes the other BPF records of the event log: the kernel's answer to a
// load, a program found in the kernel that no measured load created, and a
// program's unload.
//
// # Inputs and trust
//
// Inspect takes an artifact parsed by package lskel, verifies its signature
// in userspace with the kernel's rules (and Hornet's) through package
// measure/cms, checks every link of the hash chain that carries that
// signature to the data map and the programs inside, and returns the
// measurement with everything a verifier's policy relies on inside it. An
// artifact the analysis cannot follow is an error wrapping
// ErrNotAnalyzable; a bad signature or a broken chain is a verdict, not an
// error.
//
// # Cached verdicts and analyses
//
// Options.Cache keeps signature verdicts and loader analyses so that
// measuring the same signed artifact again neither verifies its signature
// nor analyses its loader again. Every byte of the artifact is still
// hashed on every measurement: the digests of the loader, the data blob
// and the signature, every link of the hash chain, the programs' kernel
// tags and everything the request contributes (the loader context, the
// requester, the boot time, whether the kernel checks) are computed from
// the artifact and the request at hand; the analysis (including each
// program's digest) is reused only under the blob digest just computed. A measurement made with the
// cache is the same statement as one made without it, byte for byte,
// because what is reused is a function of exactly the inputs its key
// names.
//
// A verdict, and everything the measurement takes from it (the verdict,
// the signer's certificate digest, subject, key identifier and signer ID,
// Hornet's signed map hashes, the errno and the reason in
// Inspection.Signature), is a function of:
//
//   - the signature's bytes (SHA-256 of the CMS blob);
//   - the signed content's bytes (SHA-256 of the loader's instructions);
//   - the trust store's identity (cms.TrustStore.Identity: the DER of each
//     trusted certificate, in order), so a different trust store, or the
//     same certificates in another order, is a different key;
//   - for a Hornet signature, the data map's hash too, which its verdict
//     compares with the signed map hashes: an entry holds the hash it was
//     reached for and is used only for that hash.
//
// The scheme (kernel or Hornet rules) follows from the signature's bytes
// and is kept in the entry, so a hit does not parse the signature at all.
// Nothing else goes into a verdict: package cms reads no clock, no file, no
// environment variable and no randomness while verifying (the standard
// library's crypto honours GODEBUG settings such as rsa1024min, read for
// the process as a whole; the agent does not change them while it runs).
// In particular it checks no certificate's validity period against the
// time now, because the kernel does not (a signingTime inside the
// signature is checked against an embedded signer certificate, and both
// are inside the signature's bytes): there is nothing time-dependent to
// recheck when a cached verdict is used, and a verdict an expired
// certificate gets is the same, cached or not. TestVerdictIsPure (package
// cms) fails if the verification code starts to read the clock or the
// environment; a cached verdict must then be rechecked against it on every
// use, or the cache removed.
//
// An analysis (lskel.Layout) is a function of the loader's instructions and
// the data blob alone (lskel.Analyze reads nothing else), keyed by the
// SHA-256 of each. The blob is hashed before the lookup, the digest the
// Layout's DataSHA256 (lskel.AnalyzeHashed on a miss, so the blob is read
// once); on a hit the kept Layout is copied and its programs' instructions
// are taken from the blob being measured (lskel.Layout.CloneFor).
//
// An entry is used only when all of its key matches: a changed byte of the
// signature, of the loader, of the data blob or of the trust store is a
// miss, and that part is computed as if there were no cache. Entries are
// copied in and out (nothing a caller holds aliases one, and an entry
// holds none of a caller's bytes); the least recently used entry is
// dropped when the cache is over its bounds (CacheLimits: a number of
// entries and an estimate of the bytes they hold). A cache lives as long as
// its owner (the agent keeps one for its trust store) and is never
// persisted or shared between processes. Inspect starts no goroutine: on
// a verdict miss the signature is checked after the data blob is hashed.
//
// The record codecs (ParseMeasurement, ParseLoadResult, ParseKernelProgram,
// ParseUnloaded) read untrusted bytes: they never panic, they accept exactly
// one encoding of each value, and every error they return matches
// ErrMalformed. docs/measurement-format.md gives the encoding byte by byte.
//
// The package is pure: standard library, lskel and measure/cms only, no
// syscalls, no unsafe, no cgo. It builds on every GOOS.
package measure
