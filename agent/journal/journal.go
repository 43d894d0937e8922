package journal

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bpfattest/bpfattest/cel"
)

// Journal is the open log of the current boot. It is safe for concurrent
// use.
type Journal struct {
	dir  string
	tpm  TPM
	set  settings
	lock *os.File // flock on the state directory, held until Close

	// qmu guards the group-commit queue: the appends waiting for a commit
	// and whether one is under way (append.go). It is never held while
	// waiting for mu, the disk or the TPM.
	qmu        sync.Mutex
	queue      []*waiter // guarded by qmu
	committing bool      // guarded by qmu: a leader is committing or about to

	mu sync.Mutex
	// The fields below are guarded by mu.
	f      *os.File      // the boot's log, open for writing
	path   string        // its path
	size   int64         // bytes of committed records
	idx    recordIndex   // where the committed records start in f
	rp     *cel.Replayer // replay of the committed records
	banks  []crypto.Hash // the TPM's active banks, canonical order
	broken error         // why appends are refused; nil when healthy
	// mismatch says the log no longer replays to the PCR: another writer
	// extended it. Appends are refused; the log is still served as it is.
	mismatch *MismatchError
	closed   bool
	scanned  *streamed // reconcile's scan, for keepMismatched

	// count mirrors nextNum (the number of events, which the next record
	// gets) for readers that must not wait for mu, which a snapshot holds
	// for a whole TPM quote: Len, and SizeFrom of the log's end (what a
	// verifier that resumes asks), so that requests for the next quote are
	// taken in while one runs. Stored under mu.
	count atomic.Uint64
}

// Open opens, or creates, the log of the current boot in dir, reconciles it
// with the PCR (see the package documentation), and appends an AgentStart
// record, and Recovery records for whatever reconciliation did. It fails
// with ErrLocked if another process has dir open, with a *MismatchError if
// the log and PCR disagree in a way no crash explains (unless
// Options.KeepMismatched: then it returns the journal read-only, see
// Mismatch), and with ErrCorrupt if the log's header is unusable.
func Open(ctx context.Context, dir string, tpm TPM, opts Options) (*Journal, error) {
	j, err := open(ctx, dir, tpm, opts)
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	j.count.Store(j.nextNum())
	j.mu.Unlock()
	return j, nil
}

func open(ctx context.Context, dir string, tpm TPM, opts Options) (_ *Journal, err error) {
	set, err := opts.settings()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	banks, ok := cel.SortBanks(tpm.Banks())
	if !ok || len(banks) == 0 {
		return nil, fmt.Errorf("unsupported pcr banks %v", tpm.Banks())
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	j := &Journal{dir: dir, tpm: tpm, set: set, lock: lock, banks: banks}
	defer func() {
		if err != nil {
			j.closeFiles()
		}
	}()
	if err := j.removeTemps(); err != nil {
		return nil, err
	}
	ci, err := set.clock()
	if err != nil {
		return nil, fmt.Errorf("tpm clock: %w", err)
	}
	bootID, err := set.bootID()
	if err != nil {
		return nil, err
	}
	name, err := logName(ci.ResetCount, bootID)
	if err != nil {
		return nil, err
	}
	j.path = filepath.Join(dir, name)

	var recovered []cel.RecoveryInfo
	switch _, statErr := os.Stat(j.path); {
	case errors.Is(statErr, os.ErrNotExist):
		if err := j.startBoot(ci, bootID); err != nil {
			return nil, err
		}
	case statErr != nil:
		return nil, statErr
	default:
		recovered, err = j.reconcile(ci, bootID)
		var me *MismatchError
		if errors.As(err, &me) && set.keepMism {
			if err := j.keepMismatched(me); err != nil {
				return nil, err
			}
			set.log.Error("journal open read-only: the log does not replay to the pcr", "path", j.path, "err", me)
			return j, nil
		}
		if err != nil {
			return nil, err
		}
	}
	for i := range recovered {
		content, err := recovered[i].MarshalBinary()
		if err != nil {
			return nil, err
		}
		if _, err := j.append(ctx, cel.Recovery, content); err != nil {
			return nil, fmt.Errorf("record recovery: %w", err)
		}
	}
	start := cel.AgentStartInfo{Version: set.version, PID: uint32(os.Getpid()), Time: set.now(), ClockInfo: ci,
		NoKernel: set.noKernel, Observer: set.observer, TPM: set.tpmKind}
	content, err := start.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if _, err := j.append(ctx, cel.AgentStart, content); err != nil {
		return nil, fmt.Errorf("record agent start: %w", err)
	}
	set.log.Info("journal open", "path", j.path, "records", j.idx.n, "events", j.nextNum(), "pcr", set.pcr, "recoveries", len(recovered))
	return j, nil
}

// removeTemps deletes new-log files that were never renamed into place:
// their header was never extended, so they are no part of any log.
func (j *Journal) removeTemps() error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, logPrefix) && strings.HasSuffix(n, tempSuffix) {
			j.set.log.Info("journal: removing a new log that was never put in place", "file", n)
			if err := os.Remove(filepath.Join(j.dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// startBoot creates the log of a new boot: a boot header holding the PCR
// values read now, written to a temporary file, fsynced, renamed into place,
// the directory fsynced, and only then extended.
func (j *Journal) startBoot(ci cel.ClockInfo, bootID string) error {
	start, err := j.readPCR()
	if err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	boot := cel.BootInfo{BootID: bootID, ResetCount: ci.ResetCount, RestartCount: ci.RestartCount,
		Clock: ci.Clock, PCR: uint8(j.set.pcr), Start: start, Time: j.set.now(), Kernel: j.set.kernel}
	content, err := boot.MarshalBinary()
	if err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	rec, err := cel.NewRecord(0, uint8(j.set.pcr), j.banks, cel.BootHeader, content)
	if err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	tmp := j.path + tempSuffix
	if err := writeFileSync(tmp, b); err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	j.step(stepHeaderSynced)
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	j.step(stepHeaderRenamed)
	rp, err := cel.NewReplayer(start)
	if err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	if err := j.openLog(0); err != nil { // commit counts the header in
		return err
	}
	j.rp = rp
	if err := j.extend(&rec); err != nil {
		return fmt.Errorf("new boot: %w", err)
	}
	if err := j.commit(rec, len(b)); err != nil {
		return err
	}
	j.set.log.Info("journal: new boot log", "path", j.path, "reset_count", ci.ResetCount, "boot_id", bootID)
	return nil
}

// openLog opens the log for writing; size is the length of its committed
// records.
func (j *Journal) openLog(size int64) error {
	f, err := os.OpenFile(j.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	j.f = f
	j.size = size
	return nil
}

// readPCR reads the journal's PCR and checks it has exactly the journal's
// banks.
func (j *Journal) readPCR() (map[crypto.Hash][]byte, error) {
	v, err := j.tpm.ReadPCR(j.set.pcr)
	if err != nil {
		return nil, fmt.Errorf("read pcr %d: %w", j.set.pcr, err)
	}
	if !slices.Equal(sortedBanks(v), j.banks) {
		return nil, fmt.Errorf("read pcr %d: banks %v, want %v", j.set.pcr, sortedBanks(v), j.banks)
	}
	return v, nil
}

// extend extends the PCR with rec's digests.
func (j *Journal) extend(rec *cel.Record) error {
	ds := make(map[crypto.Hash][]byte, len(rec.Digests))
	for _, d := range rec.Digests {
		ds[d.Hash] = d.Value
	}
	if err := j.tpm.Extend(j.set.pcr, ds); err != nil {
		return fmt.Errorf("extend pcr %d with record %d: %w", j.set.pcr, rec.RecNum, err)
	}
	return nil
}

// commit adds an extended record to the in-memory state: the replay and
// the record's place in the index (the records themselves stay on disk).
// The record was built from the replay's own state, so a failure means a
// bug; the journal then refuses further appends.
func (j *Journal) commit(rec cel.Record, n int) error {
	if err := j.rp.Add(&rec); err != nil {
		j.broken = fmt.Errorf("committed record does not replay: %w", err)
		return fmt.Errorf("commit: %w", j.broken)
	}
	j.idx.add(j.size, rec.RecNum)
	j.size += int64(n)
	j.count.Store(j.nextNum())
	return nil
}

// nextNum returns the number the next record gets: the number of events
// in the log (a batch record holds several). j.mu must be held.
func (j *Journal) nextNum() uint64 {
	if j.rp == nil {
		return 0
	}
	return j.rp.Next()
}

func (j *Journal) step(s step) {
	if j.set.hook != nil {
		j.set.hook(s)
	}
}

// Path returns the path of the current boot's log.
func (j *Journal) Path() string { return j.path }

// offset returns where the committed record holding event from (below
// nextNum) starts in the log; a log that cannot be read back as it was
// written marks the journal broken. j.mu must be held.
func (j *Journal) offset(from uint64) (int64, error) {
	_, off, err := j.idx.locate(j.f, from, j.size)
	if err != nil {
		return 0, j.readFailed(err)
	}
	return off, nil
}

// PCR returns the index of the PCR the journal extends.
func (j *Journal) PCR() int { return j.set.pcr }

// Close closes the log and releases the state directory. Appends and
// snapshots after Close fail with ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	j.closed = true
	return j.closeFiles()
}

func (j *Journal) closeFiles() error {
	var errs []error
	if j.f != nil {
		errs = append(errs, j.f.Close())
		j.f = nil
	}
	if j.lock != nil {
		errs = append(errs, j.lock.Close()) // releases the flock
		j.lock = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal/close: %w", err)
	}
	return nil
}

// equalValues reports whether two sets of PCR values are equal.
func equalValues(a, b map[crypto.Hash][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for h, v := range a {
		if w, ok := b[h]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
