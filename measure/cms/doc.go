// Package cms reads, verifies and writes the CMS (PKCS#7) SignedData that
// signs BPF programs, with the rules of the Linux 6.18 kernel
// (verify_pkcs7_signature for BPF_PROG_LOAD) and of the Hornet LSM.
//
// Trust assumptions: a signature is only as good as the TrustStore it is
// checked against, which stands in for the kernel keyring named by
// keyring_id; nothing inside the signature (embedded certificates, signing
// time) is trusted unless it chains to a key in that store. Verify reports
// what a verifying kernel would decide: it does not look at the clock, does
// not check certificate expiry except against a signed signingTime when
// the signer's certificate is embedded, and does not decide policy (which
// signers or digests are acceptable); callers apply policy to the Result.
// Callers must pass exactly the bytes the kernel will see: the
// instructions as signed content and, for Hornet, the frozen map contents
// in fd_array order.
//
// Parse mirrors the kernel's tolerant ASN.1 BER decoder
// (lib/asn1_decoder.c) over the grammar of
// crypto/asymmetric_keys/pkcs7.asn1, including indefinite and non-minimal
// lengths and ignored trailing bytes; the actions follow pkcs7_parser.c,
// verification pkcs7_verify.c and pkcs7_trust.c. Hornet's map-hash
// attribute follows security/hornet (v7) and its reference signing tool.
// Every rule, every place where this package is deliberately stricter than
// the kernel, and the measured differences from openssl cms -verify are in
// docs/cms-verification.md.
//
// Sign writes SchemeKernel signatures byte-identical to bpftool gen
// skeleton -S (RFC 5652 SignedData, detached, no attributes, no
// certificates, subjectKeyIdentifier) and SchemeHornet signatures shaped
// like Hornet's reference tool.
//
// The package is pure: standard library only, no system calls, no cgo.
// Inputs are untrusted; parsers return *ParseError values naming the field
// and offset and never panic.
package cms
