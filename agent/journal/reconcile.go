package journal

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/bpfattest/bpfattest/cel"
)

// reconcile reads the current boot's log, compares its replay with the PCR
// and settles the one state a crash can leave behind, returning what it did
// for Recovery records. It refuses anything else.
func (j *Journal) reconcile(ci cel.ClockInfo, bootID string) ([]cel.RecoveryInfo, error) {
	sc, err := scanFile(j.path)
	if err != nil {
		return nil, fmt.Errorf("reconcile %s: %w", j.path, err)
	}
	if sc.boot.BootID != bootID || sc.boot.ResetCount != ci.ResetCount {
		return nil, fmt.Errorf("reconcile %s: %w: header is for boot %s reset count %d, this is boot %s reset count %d",
			j.path, ErrCorrupt, sc.boot.BootID, sc.boot.ResetCount, bootID, ci.ResetCount)
	}
	if int(sc.boot.PCR) != j.set.pcr {
		return nil, fmt.Errorf("reconcile %s: log extends pcr %d, configured pcr is %d", j.path, sc.boot.PCR, j.set.pcr)
	}
	if logBanks := sortedBanks(sc.boot.Start); !slices.Equal(logBanks, j.banks) {
		return nil, fmt.Errorf("reconcile %s: %w: log has banks %v, the tpm has %v", j.path, ErrPCRMismatch, logBanks, j.banks)
	}
	pcr, err := j.readPCR()
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	all := sc.rp.Values()
	withoutLast := sc.rpPrev.Values()
	log := j.set.log.With("path", j.path, "records", sc.valid, "valid_end", sc.validEnd, "tail", len(sc.tail))

	switch {
	case equalValues(pcr, all) && len(sc.tail) == 0:
		log.Info("journal: log replays to the pcr")
		return nil, j.resume(sc, sc.valid)

	case equalValues(pcr, all):
		log.Warn("journal: discarding bytes after the last valid record; they were never extended", "reason", sc.tailErr)
		ri, err := j.discardTail(sc)
		if err != nil {
			return nil, err
		}
		return []cel.RecoveryInfo{ri}, j.resume(sc, sc.valid)

	case equalValues(pcr, withoutLast) && len(sc.tail) == 0:
		log.Warn("journal: last record is durable but was not extended; extending it now")
		if err := j.resume(sc, sc.valid-1); err != nil {
			return nil, err
		}
		last := sc.last
		n := last.EncodedLen()
		if err := j.extend(&last); err != nil {
			return nil, fmt.Errorf("reconcile: roll forward: %w", err)
		}
		j.step(stepRolledForward)
		if err := j.commit(last, n); err != nil {
			return nil, err
		}
		off := sc.validEnd - int64(n)
		return []cel.RecoveryInfo{{
			Action: cel.RolledForward, RecNum: last.RecNum, Offset: uint64(off), Length: uint64(n),
			SHA256: sha256.Sum256(sc.lastBytes),
			Detail: fmt.Sprintf("pcr equalled the replay without record %d: it was durable but not extended when the previous agent stopped; extended it now", last.RecNum),
		}}, nil
	}
	me := &MismatchError{Path: j.path, Records: sc.valid, ValidEnd: sc.validEnd, TailLen: int64(len(sc.tail)),
		TailErr: sc.tailErr, PCR: pcr, Replay: all, ReplayWithoutLast: withoutLast}
	j.scanned = sc
	log.Error("journal: log does not match the pcr; refusing to continue", "err", me)
	return nil, me
}

// keepMismatched takes over the valid records of a log that does not replay
// to the PCR, read-only: nothing is cut, written or extended.
func (j *Journal) keepMismatched(me *MismatchError) error {
	sc := j.scanned
	j.scanned = nil
	if sc == nil {
		return me
	}
	j.rp = sc.rp
	j.idx = sc.idx
	f, err := os.Open(j.path)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	j.f, j.size, j.mismatch = f, sc.validEnd, me
	return nil
}

// resume opens the log for appending after its first n valid records (all
// of them, or all but the last) and takes over their replay.
func (j *Journal) resume(sc *streamed, n int) error {
	switch n {
	case sc.valid:
		j.rp = sc.rp
	case sc.valid - 1:
		j.rp = sc.rpPrev
	default:
		return fmt.Errorf("reconcile: resume after %d of %d records", n, sc.valid)
	}
	j.idx = sc.idx
	j.idx.truncate(n)
	size := sc.validEnd
	if n < sc.valid {
		size -= int64(len(sc.lastBytes))
	}
	if err := j.openLog(size); err != nil {
		return err
	}
	// The previous agent may have died between its write and its fsync:
	// make what it wrote durable before extending anything over it.
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("reconcile: fsync: %w", err)
	}
	return nil
}

// discardTail moves the bytes after the valid records to a side file (kept
// for inspection), cuts them from the log and fsyncs it.
func (j *Journal) discardTail(sc *streamed) (cel.RecoveryInfo, error) {
	side := fmt.Sprintf("%s.discarded-%d", j.path, sc.validEnd)
	if err := writeFileSync(side, sc.tail); err != nil {
		// A previous agent may have stopped after keeping the same bytes.
		prev, rerr := os.ReadFile(side)
		if !errors.Is(err, os.ErrExist) || rerr != nil || !bytes.Equal(prev, sc.tail) {
			return cel.RecoveryInfo{}, fmt.Errorf("reconcile: keep discarded bytes: %w", err)
		}
	}
	j.step(stepTailQuarantined)
	f, err := os.OpenFile(j.path, os.O_RDWR, 0)
	if err != nil {
		return cel.RecoveryInfo{}, fmt.Errorf("reconcile: %w", err)
	}
	err = f.Truncate(sc.validEnd)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return cel.RecoveryInfo{}, fmt.Errorf("reconcile: cut discarded bytes: %w", err)
	}
	return cel.RecoveryInfo{
		Action: cel.DiscardedTail, RecNum: uint64(sc.valid), Offset: uint64(sc.validEnd), Length: uint64(len(sc.tail)),
		SHA256: sha256.Sum256(sc.tail),
		Detail: fmt.Sprintf("pcr equalled the replay of the %d valid records; the %d bytes after them were never extended (%v); kept in %s",
			sc.valid, len(sc.tail), sc.tailErr, filepath.Base(side)),
	}, nil
}
