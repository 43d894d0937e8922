// Package cel encodes, decodes and replays bpfattest's event log: TCG
// Canonical Event Log (CEL) records in the CEL TLV encoding, each extended
// into one TPM PCR: a record is one measured event, or a batch record
// carrying several (batch.go), whose events are numbered by record numbers.
//
// The package is pure: it takes bytes and returns records, digests and text.
// It touches no file, TPM or kernel and builds with CGO_ENABLED=0 on any GOOS.
//
// Trust assumptions. Decode trusts nothing in its input: every length is
// bounds-checked, every field is checked for its exact size, type and order,
// and any departure from the canonical encoding is an error naming the record
// index, the byte offset and the field. Decode never panics on input. A
// decoded record is only well formed; it is not yet trusted. Replay is what
// ties records to a PCR: it recomputes each record's digests from the record's
// own content bytes (a record whose digests do not match its content is an
// error), checks record-number continuity (each record's number is the
// previous one's plus its number of events), and folds the digests into the
// starting PCR values. Only a replay result that equals PCR values taken from
// a verified TPM quote makes the records trustworthy. Records returned by
// Decode alias the input slice; callers that reuse the buffer must copy.
//
// Format. The TLV encoding follows the TCG Canonical Event Log Format
// specification, version 1.0 (TLV encoding: type u8, length u32 big-endian,
// value; top-level types 0 recnum, 1 PCR, 3 digests, with digest entries typed
// by their TPM_ALG_ID). Where the specification leaves a choice, this package
// fixes one so the encoding is canonical: recnum is 8 bytes, the PCR index is
// 1 byte, digests are sorted by algorithm id with no duplicates. The content
// types 0xB0 (BPF records) and 0xB1 (agent management records) are this
// project's own; the specification assigns 4 (cel_mgt), 5 (pcclient_std),
// 7 (ima_template) and 8 (ima_tlv), and 9 and 80 are used by systemd tooling
// and Google's COS. The digest of a record in each bank is the hash of the
// record's whole content field (type, length and value), so the content type
// and kind are bound by the PCR as well as the content. The byte-level format,
// the replay algorithm and a worked example are in docs/event-log.md.
package cel
