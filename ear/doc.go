// Package ear turns a bpfattest verdict into an EAT Attestation Result
// (EAR, draft-ietf-rats-ear-03, profile "tag:ietf.org,2026:rats/ear#03"):
// an AR4SI trustworthiness vector (draft-ietf-rats-ar4si) for the host,
// signed as a JWT (JWS compact serialisation, RFC 7515 and RFC 7519), and
// checks such tokens.
//
// Appraise is the mapping, and nothing else: it reads a verifier.Verdict
// and decides one value per AR4SI claim, with the reason for each
// (docs/ear.md has the table). FromVerdict adds what the draft's claims-set
// needs around it (issue time, verifier identity, policy identifiers,
// nonces); Sign and Verify are the JWS step, done with go-jose. A fleet
// service calls FromVerdict and Sign for each verdict it makes, serves the
// token and puts it in its webhooks.
//
// Trust assumptions: Appraise trusts the verdict it is given: only a
// verdict that package verifier made from verified evidence says compliant
// or non-compliant, and a caller that builds one by hand vouches for it.
// An EAR is a statement signed by the verifier's key: keep that key as a
// verifier's own, never on an attested host. Verify checks the signature
// with the key the caller trusts, then the claims-set's shape (the profile,
// the tiers, each status no better than its worst claim); it does not
// decide whether the host is trustworthy: that is the relying party's
// policy over the vector.
//
// The package is pure: no TPM, no syscalls, no cgo.
package ear
