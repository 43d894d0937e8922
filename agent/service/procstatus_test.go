package service

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestParseStatusGroups reads the Groups line of real /proc/PID/status
// files and refuses malformed ones with the offset.
func TestParseStatusGroups(t *testing.T) {
	for file, want := range map[string][]uint32{
		"proc-status-root.txt":   {},
		"proc-status-groups.txt": {4, 27, 100},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseStatusGroups(b)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: groups %v, want %v", file, got, want)
		}
	}
	for name, in := range map[string]string{
		"no groups line": "Name:\tcat\nUid:\t0\t0\t0\t0\n",
		"negative gid":   "Name:\tcat\nGroups:\t-1\n",
		"overflow":       "Groups:\t4294967296\n",
		"garbage":        "Groups:\t4 x 5\n",
	} {
		if g, err := parseStatusGroups([]byte(in)); err == nil {
			t.Errorf("%s: accepted as %v", name, g)
		}
	}
}

// TestProcGroupsSelf reads this process's own status file.
func TestProcGroupsSelf(t *testing.T) {
	if _, err := procGroups(uint32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseStatusGroups(f *testing.F) {
	for _, file := range []string{"proc-status-root.txt", "proc-status-groups.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Groups:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		groups, err := parseStatusGroups(b)
		if err == nil && len(groups) > maxGroups {
			t.Fatalf("%d groups past the limit", len(groups))
		}
	})
}
