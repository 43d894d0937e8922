package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// simRunsKept is how many earlier simulator runs' state directories are
// kept beside the current one.
const simRunsKept = 3

// simStateDir prepares the state directory of an in-process simulator run:
// StateDir/sim, empty, since a simulator's PCRs and keys die with the
// process that made them and nothing of an earlier one can be continued.
// The earlier runs are not overwritten: StateDir/sim becomes sim.1, sim.1
// becomes sim.2, and so on up to simRunsKept, so that an earlier run's log
// can still be read (bpfattest log --dir STATE/sim.1).
func simStateDir(stateDir string) (string, error) {
	dir := filepath.Join(stateDir, "sim")
	run := func(i int) string { return dir + "." + strconv.Itoa(i) }
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", fmt.Errorf("simulator state: %w", err)
	}
	if _, err := os.Stat(dir); err == nil {
		if err := os.RemoveAll(run(simRunsKept)); err != nil {
			return "", fmt.Errorf("simulator state: %w", err)
		}
		for i := simRunsKept - 1; i >= 1; i-- {
			if err := os.Rename(run(i), run(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("simulator state: %w", err)
			}
		}
		if err := os.Rename(dir, run(1)); err != nil {
			return "", fmt.Errorf("simulator state: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("simulator state: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("simulator state: %w", err)
	}
	return dir, nil
}
