package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestLoad runs -load-clients clients (64) against one bpfattestd on a
// swtpm for -load-duration (10s by default; the documented run is 10m).
// Each client loops: load the signed counter fixture pinned into a fresh
// bpffs directory, unpin it (so the programs leave the kernel and the
// observer records them as unloaded), then ask for a quote from the end of
// what the verifier has seen. Once a second a verifier ingests a quote
// into the ledger (the log must replay to it, every acknowledged load and
// quote must be in it) and the daemon's resident memory is sampled. The
// run fails on any error, any acknowledgement the log does not hold, or
// (in runs of a minute or more) resident memory at the end above 1.5 times
// (plus 16 MiB) what it was after the first tenth of the run.
func TestLoad(t *testing.T) {
	testutil.RequireRoot(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := t.TempDir()
	pins := bpffs(t)
	args := daemonArgs(t, sw.Spec(), dir)
	d, err := startDaemon(args)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			d.kill()
			t.Logf("bpfattestd logs:\n%s", d.logs)
		}
	}()
	artifact := fixture(t)
	l := newLedger()
	var issued atomic.Int64
	var errCount atomic.Int64
	fail := func(format string, args ...any) {
		if errCount.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), *loadDuration)
	defer cancel()
	start := time.Now()
	runEnd, _ := ctx.Deadline()
	lat := make([]latencies, *loadClients)
	var wg sync.WaitGroup
	for c := range *loadClients {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				pinDir := filepath.Join(pins, fmt.Sprintf("c%d-%d", c, i))
				if err := os.Mkdir(pinDir, 0o700); err != nil {
					fail("client %d: %v", c, err)
					return
				}
				issued.Add(1)
				t0 := time.Now()
				r, err := d.local.Load(context.Background(), &pb.LoadRequest{Artifact: artifact, PinDir: pinDir})
				if err != nil || r.GetOutcome() != "loaded" {
					fail("client %d load %d: %v (outcome %q)", c, i, err, r.GetOutcome())
					return
				}
				lat[c].load = append(lat[c].load, time.Since(t0))
				l.ackLoad(r)
				for _, p := range r.GetPinned() {
					if err := os.Remove(p); err != nil {
						fail("client %d: unpin: %v", c, err)
					}
				}
				if err := os.Remove(pinDir); err != nil {
					fail("client %d: %v", c, err)
				}
				t0 = time.Now()
				ev, err := d.remote.Quote(context.Background(), &pb.QuoteRequest{Nonce: nonce(), FromRecord: l.Len()})
				if err == nil {
					err = l.ackQuote(ev)
				}
				if err != nil {
					fail("client %d quote %d: %v", c, i, err)
					return
				}
				lat[c].quote = append(lat[c].quote, time.Since(t0))
			}
		})
	}

	// The verifier and the memory sampler, once a second.
	var rss []rssSample
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
		}
		kib, err := d.rssKiB()
		if err != nil {
			fail("rss: %v", err)
			cancel()
			continue
		}
		rss = append(rss, rssSample{time.Since(start), kib})
		// A verification cut short by the end of the run is not an error:
		// gRPC can report the deadline a moment before ctx.Err() does.
		if err := verifyRunning(ctx, d, l, &issued); err != nil && ctx.Err() == nil && time.Until(runEnd) > 0 {
			fail("verifier: %v", err)
			cancel()
		}
		if *verbose && len(rss)%30 == 0 {
			t.Logf("%v: rss %d KiB, %+v", time.Since(start).Round(time.Second), kib, l.Stats())
		}
	}
	elapsed := time.Since(start)
	if errCount.Load() > 0 {
		t.Fatalf("%d errors", errCount.Load())
	}
	if err := verify(t.Context(), d, l, &issued); err != nil {
		t.Fatal(err)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cliBinary, "log", "--dir", args[indexOf(args, "--state-dir")+1],
		"--verify-against-pcr", "--tpm", sw.Spec()).CombinedOutput()
	if err != nil {
		t.Fatalf("bpfattest log --verify-against-pcr: %v\n%s", err, tail(out))
	}

	var all latencies
	for _, c := range lat {
		all.load = append(all.load, c.load...)
		all.quote = append(all.quote, c.quote...)
	}
	st := l.Stats()
	t.Logf("%d clients for %v: %d loads (%.1f/s; p50 %v, p99 %v), %d quotes (%.1f/s; p50 %v, p99 %v), 0 errors; "+
		"log %d records, every acknowledged load and quote found; CLI: %s",
		*loadClients, elapsed.Round(time.Second), len(all.load), float64(len(all.load))/elapsed.Seconds(),
		pct(all.load, 50), pct(all.load, 99), len(all.quote), float64(len(all.quote))/elapsed.Seconds(),
		pct(all.quote, 50), pct(all.quote, 99), st.Records, lastLine(out))
	if len(rss) < 3 {
		t.Logf("rss samples: %v", rss)
		return
	}
	early, mid, end := rss[len(rss)/10], rss[len(rss)/2], rss[len(rss)-1]
	peak := slices.MaxFunc(rss, func(a, b rssSample) int { return a.kib - b.kib })
	t.Logf("rss: %v %d KiB, %v %d KiB, %v %d KiB; peak %d KiB at %v", early.at.Round(time.Second), early.kib,
		mid.at.Round(time.Second), mid.kib, end.at.Round(time.Second), end.kib, peak.kib, peak.at.Round(time.Second))
	// Seconds-long runs are still warming up; the bound applies from a
	// minute on.
	if limit := early.kib*3/2 + 16<<10; elapsed >= time.Minute && end.kib > limit {
		t.Errorf("resident memory grew from %d KiB to %d KiB (limit %d)", early.kib, end.kib, limit)
	}
}

// verifyRunning ingests a quote while clients run; acknowledgements beyond
// the quote stay pending until the next one.
func verifyRunning(ctx context.Context, d *daemon, l *ledger, issued *atomic.Int64) error {
	ev, err := d.remote.Quote(ctx, &pb.QuoteRequest{Nonce: nonce(), FromRecord: l.Len()})
	if err != nil {
		return err
	}
	if err := l.ingest(ev); err != nil {
		return err
	}
	// Read after the quote: requests sent since are not in it.
	if err := l.check(issued.Load()); err != nil {
		return err
	}
	_, err = l.settle()
	return err
}

type latencies struct{ load, quote []time.Duration }

type rssSample struct {
	at  time.Duration
	kib int
}

func (s rssSample) String() string { return fmt.Sprintf("%v:%dKiB", s.at.Round(time.Second), s.kib) }

// pct returns the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(len(ds)-1)*p/100].Round(100 * time.Microsecond)
}

// bpffs mounts a private bpf file system for the pins and unmounts it at
// cleanup.
func bpffs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("bpffs", dir, "bpf", 0, ""); err != nil {
		testutil.SkipEnv(t, "mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	return dir
}
