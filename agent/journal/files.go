package journal

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bpfattest/bpfattest/cel"
)

// File names in a state directory.
const (
	lockName   = "lock"
	logPrefix  = "boot-"
	logSuffix  = ".cel"
	tempSuffix = ".tmp"
)

// logName names the log of one boot: the TPM reset count (zero-padded so
// names sort by it) and the kernel boot id.
func logName(resetCount uint32, bootID string) (string, error) {
	if bootID == "" || len(bootID) > 64 || strings.Trim(bootID, "0123456789abcdefABCDEF-") != "" {
		return "", fmt.Errorf("boot id %q is not a uuid", bootID)
	}
	return fmt.Sprintf("%s%010d-%s%s", logPrefix, resetCount, bootID, logSuffix), nil
}

// Log is one boot's log read from disk.
type Log struct {
	Path string
	// Boot is the content of the log's boot header.
	Boot cel.BootInfo
	// Records are the log's valid records, the boot header first.
	Records []cel.Record
	// Final is the replay of Records from Boot.Start: the PCR values the
	// log accounts for.
	Final map[crypto.Hash][]byte
}

// Parse reads and checks one boot's log, read into memory by a caller that
// bounds its size: strict decoding, a boot header first, and a replay of
// every record from the header's starting values. path is what the Log and
// the errors call it. On error it returns the valid records before the
// failure with the error.
func Parse(path string, b []byte) (*Log, error) {
	sc, err := scan(b)
	lg := &Log{Path: path, Boot: sc.boot, Records: sc.recs[:sc.valid]}
	if err != nil {
		return lg, fmt.Errorf("journal/read %s: %w", path, err)
	}
	if sc.tailErr != nil {
		return lg, fmt.Errorf("journal/read %s: %w", path, sc.tailErr)
	}
	lg.Final = sc.rp.Values()
	return lg, nil
}

// BootLog names one boot's log in a state directory.
type BootLog struct {
	Path    string
	ModTime time.Time
}

// Boots lists the boot logs in dir, oldest first (by modification time,
// then name). The last is the one most recently written.
func Boots(dir string) ([]BootLog, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal/boots: %w", err)
	}
	var out []BootLog
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, logPrefix) || !strings.HasSuffix(n, logSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("journal/boots: %w", err)
		}
		out = append(out, BootLog{Path: filepath.Join(dir, n), ModTime: info.ModTime()})
	}
	slices.SortFunc(out, func(a, b BootLog) int {
		if c := a.ModTime.Compare(b.ModTime); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out, nil
}

// scanned is a log file taken apart: its valid records, the replay over
// them, and what follows them.
type scanned struct {
	recs  []cel.Record // decoded records; the first valid are replayed
	valid int
	boot  cel.BootInfo
	rp    *cel.Replayer // over recs[:valid]
	// validEnd is the byte offset where the valid records end.
	validEnd int64
	// tailErr says why the bytes after validEnd are not a valid record;
	// nil when there are none.
	tailErr error
	tail    []byte
}

// scan decodes b, checks the boot header and replays the records from its
// starting values as far as they are valid. An error means the log has no
// usable boot header (ErrCorrupt); damage after the header is reported in
// tailErr.
func scan(b []byte) (scanned, error) {
	var sc scanned
	recs, derr := cel.Decode(b)
	sc.recs = recs
	if len(recs) == 0 {
		return sc, fmt.Errorf("%w: no boot header: %v", ErrCorrupt, derr)
	}
	h := &recs[0]
	boot, rp, err := openBoot(h)
	if err != nil {
		return sc, err
	}
	sc.boot = boot
	sc.valid = 1
	sc.validEnd = int64(h.EncodedLen())
	for i := 1; i < len(recs); i++ {
		if err := rp.Add(&recs[i]); err != nil {
			sc.tailErr = err
			break
		}
		sc.valid++
		sc.validEnd += int64(recs[i].EncodedLen())
	}
	if sc.tailErr == nil && derr != nil {
		sc.tailErr = derr
	}
	sc.rp = rp
	sc.tail = b[sc.validEnd:]
	return sc, nil
}

// openBoot checks the first record of a log, its boot header, and returns
// the header's content and a replay that has added it. Any failure is
// ErrCorrupt: no crash produces such a log. Both scanners (scan and
// scanFile) start with it.
func openBoot(h *cel.Record) (cel.BootInfo, *cel.Replayer, error) {
	if h.Type != cel.BootHeader {
		return cel.BootInfo{}, nil, fmt.Errorf("%w: first record is %v, want boot_header", ErrCorrupt, h.Type)
	}
	boot, err := cel.ParseBootInfo(h.Content)
	if err != nil {
		return cel.BootInfo{}, nil, fmt.Errorf("%w: boot header: %w", ErrCorrupt, err)
	}
	if boot.PCR != h.PCR {
		return cel.BootInfo{}, nil, fmt.Errorf("%w: boot header names pcr %d, record is on pcr %d", ErrCorrupt, boot.PCR, h.PCR)
	}
	rp, err := cel.NewReplayer(boot.Start)
	if err != nil {
		return cel.BootInfo{}, nil, fmt.Errorf("%w: boot header: %w", ErrCorrupt, err)
	}
	if err := rp.Add(h); err != nil {
		return cel.BootInfo{}, nil, fmt.Errorf("%w: boot header: %w", ErrCorrupt, err)
	}
	if h.RecNum != 0 {
		return cel.BootInfo{}, nil, fmt.Errorf("%w: boot header has recnum %d, want 0", ErrCorrupt, h.RecNum)
	}
	return boot, rp, nil
}

// replayWithoutLast replays all valid records but the last: the header's
// starting values when only the header is valid.
func (sc *scanned) replayWithoutLast() (map[crypto.Hash][]byte, error) {
	rp, err := cel.NewReplayer(sc.boot.Start)
	if err != nil {
		return nil, err
	}
	for i := 0; i < sc.valid-1; i++ {
		if err := rp.Add(&sc.recs[i]); err != nil {
			return nil, err
		}
	}
	return rp.Values(), nil
}

// syncDir fsyncs a directory so that a file created or renamed in it
// survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileSync creates path exclusively with b, fsynced, and fsyncs dir.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, os.Remove(path))
	}
	return syncDir(filepath.Dir(path))
}
