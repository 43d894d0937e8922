package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/bpfattest/bpfattest/agent/journal"
)

// latestBootLog returns the most recently written boot log of an agent's
// state directory: the daemon's --state-dir, where a TPM's logs live, or,
// when there are none, its sim/ subdirectory, where an agent on the
// in-process simulator keeps the current run's (earlier runs are in sim.1,
// sim.2, …, and can be named directly). note says which was taken when it
// was not dir itself.
func latestBootLog(dir string) (path, note string, err error) {
	boots, err := journal.Boots(dir)
	if err != nil {
		return "", "", err
	}
	if len(boots) == 0 {
		sim := filepath.Join(dir, "sim")
		if simBoots, err := journal.Boots(sim); err == nil && len(simBoots) > 0 {
			return simBoots[len(simBoots)-1].Path, fmt.Sprintf("no boot logs in %s; reading the in-process simulator's current run in %s", dir, sim), nil
		}
		return "", "", fmt.Errorf("%w in %s (nor in %s)", errNoBootLogs, dir, sim)
	}
	return boots[len(boots)-1].Path, "", nil
}

var errNoBootLogs = errors.New("no boot logs")
