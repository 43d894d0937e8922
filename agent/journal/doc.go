// Package journal keeps bpfattest's event log on disk, one log per boot, in
// step with the TPM PCR it extends: every record is durable before its digest
// reaches the PCR, and start-up reconciles the log with the PCR before
// anything new is recorded.
//
// Protocol (write-ahead). Append encodes the record (cel), writes it
// at the end of the boot's log, fsyncs the file, then extends the PCR with
// the record's digests in one TPM2_PCR_Extend. A record is therefore on disk
// before the PCR can contain it, and at most one record (the last) can be
// durable but not yet extended. Group commit: appends that arrive while a
// commit is under way are written together by the next one, as one batch
// record (cel.Batch) carrying their events, under the same protocol: one
// write, one fsync, one extend. Events are numbered by record numbers (a
// batch record's is its first event's), and readers take event numbers. Open replays the durable records from the
// boot header's starting values and compares with the PCR:
//
//   - equal: clean;
//   - equal to the replay without the last record: that record was never
//     extended; it is extended now (rolled forward) and a Recovery record
//     says so;
//   - equal, with bytes after the last valid record: those bytes (a torn or
//     garbled write) were never extended; they are moved aside to a
//     ".discarded-<offset>" file, cut from the log, and a Recovery record
//     says so;
//   - anything else: Open refuses with a *MismatchError that lists what does
//     not match. Nothing is ever repaired silently.
//
// docs/crash-safety.md walks through every crash point.
//
// Files. A state directory holds a lock file and one log per boot, named
// boot-<TPM resetCount>-<kernel boot_id>.cel. A log is a plain CEL TLV
// stream: a BootHeader record (boot id, TPM counters, starting PCR values),
// then AgentStart, Recovery and BPF records. A new boot starts a new log;
// earlier boots' logs stay as they were and remain readable (ReadFile,
// Boots). A new log is written to a temporary file, fsynced and renamed, and
// the directory fsynced, so a log file never exists without a complete boot
// header.
//
// Trust assumptions. The journal trusts the TPM it is given and the file
// system to keep fsynced data. It does not trust the log file's contents:
// every byte is decoded strictly and replayed against the PCR on Open, so a
// log edited while the agent was down is refused. One process owns a state
// directory (flock on its lock file); a second fails fast with ErrLocked.
// Within the process, one mutex serialises Append and Snapshot, so a quote
// taken inside Snapshot sees a log and PCR that agree. Another writer of the
// same PCR is detected (ErrPCRMismatch), not tolerated.
//
// Memory. The journal keeps no record in memory, only the replay of the
// committed records and the offset in the file of every 64th one (8 bytes
// per 64 records; a record in between is found by stepping over the
// records of its block, read back from the file): Records, Walk, Snapshot
// and SnapshotSlice read the committed bytes back from the log (which
// Append never rewrites) and Open reconciles a log a chunk at a time, so a
// long log costs disk and page cache, not heap. If the
// file cannot be read back as it was written, the journal refuses further
// appends (ErrBroken) as after a failed fsync.
//
// After an error that leaves the PCR or the file in an unknown state (a
// failed extend or fsync), the Journal refuses further appends (ErrBroken);
// the caller must Close it and Open it again, which reconciles.
package journal
