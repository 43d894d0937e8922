package agent

import (
	"errors"
	"os"
	"testing"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

// FuzzInspect feeds arbitrary artifacts to the pure front of the load
// pipeline: it must never panic, every refusal must be ErrInvalid, and an
// accepted artifact must come with a loader context of the size its layout
// asks for.
func FuzzInspect(f *testing.F) {
	for _, name := range []string{"counter", "pair", "rocfg"} {
		for _, file := range []string{"headers/" + name + ".lskel.h", "headers/" + name + ".signed.lskel.h"} {
			b, err := os.ReadFile(testutil.LskelFile(f, file))
			if err != nil {
				f.Fatal(err)
			}
			// Bundles only: the header reader has its own fuzz target in
			// measure, and its 30-100 KB seeds make the mutator crawl.
			if art, err := lskel.Load(b); err == nil {
				if bundle, err := art.MarshalBundle(); err == nil {
					f.Add(bundle)
				}
			}
		}
	}
	trust, err := cms.LoadTrust(testutil.LskelFile(f, "keys/TEST_ONLY_signing_cert.der"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := inspect(LoadRequest{Artifact: b}, measure.Options{Trust: trust, Load: &measure.Load{Context: bpfsys.NewCtx}})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		lc := in.LoaderContext
		if len(lc.Bytes) == 0 || len(lc.Bytes) < 24+16*lc.Maps+4*lc.Programs {
			t.Fatalf("context of %d bytes for %d maps and %d programs", len(lc.Bytes), lc.Maps, lc.Programs)
		}
	})
}
