package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestSimStateDir: each simulator run gets an empty StateDir/sim; the
// earlier runs move to sim.1, sim.2, sim.3, newest first, and the oldest
// beyond that is removed.
func TestSimStateDir(t *testing.T) {
	state := t.TempDir()
	for run := range 6 {
		dir, err := simStateDir(state)
		if err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("run %d: %s not empty", run, dir)
		}
		if err := os.WriteFile(filepath.Join(dir, "run"), []byte(strconv.Itoa(run)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range map[string]string{"sim": "5", "sim.1": "4", "sim.2": "3", "sim.3": "2"} {
		b, err := os.ReadFile(filepath.Join(state, i, "run"))
		if err != nil || string(b) != want {
			t.Errorf("%s holds run %q (%v), want %s", i, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "sim.4")); err == nil {
		t.Error("sim.4 kept")
	}
}
