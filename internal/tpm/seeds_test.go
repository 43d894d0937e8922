package tpm

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateSeeds = flag.Bool("update", false, "rewrite the fuzz seed files in testdata from the simulator")

// TestWriteSeeds regenerates testdata/ak-*.blob (AK blobs created on the
// in-process simulator) and testdata/rsp-*.bin (raw TPM responses) when run
// with -update; otherwise it checks that they still parse.
func TestWriteSeeds(t *testing.T) {
	if !*updateSeeds {
		paths, _ := filepath.Glob(filepath.Join("testdata", "ak-*.blob"))
		if len(paths) == 0 {
			t.Fatal("no AK blob seeds; run go test -run TestWriteSeeds -update")
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := parseAKBlob(b); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		return
	}
	d, err := Open(t.Context(), "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, alg := range []AKAlgorithm{AKECCP256, AKRSA2048} {
		if _, err := d.LoadOrCreateAK(AKOptions{Algorithm: alg, StateDir: "testdata"}); err != nil {
			t.Fatal(err)
		}
	}
	// TPM2_GetRandom(16), and an unsupported command code.
	for name, cmd := range map[string][]byte{
		"rsp-getrandom.bin": {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16},
		"rsp-badcc.bin":     {0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x0f, 0xff},
	} {
		rsp, err := d.Transport().Send(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", name), rsp, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
