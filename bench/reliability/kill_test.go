package reliability

import (
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestKillLoop kills bpfattestd with SIGKILL -kills times (20 by default)
// while clients load the signed counter fixture and ask for quotes through
// its gRPC services. Every daemon runs on the same swtpm and state
// directory, so the PCR and the log survive each kill as they would on a
// host. After each kill the daemon is restarted (its start-up reconciles
// the log with the PCR and refuses on any divergence), and the ledger
// ingests a fresh quote from where it stopped: the log must replay to the
// quoted PCR values, contain every load a client was told succeeded
// (measurement and result, exactly once) and every quote a client
// received as a prefix. At the end the daemon stops cleanly and the CLI
// checks the whole log against the PCR read from the TPM.
func TestKillLoop(t *testing.T) {
	testutil.RequireRoot(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	dir := t.TempDir()
	args := daemonArgs(t, sw.Spec(), dir)
	artifact := fixture(t)
	l := newLedger()
	start := time.Now()
	var issued atomic.Int64 // load requests sent

	for cycle := 0; cycle <= *kills; cycle++ {
		d, err := startDaemon(args)
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		if err := verify(t.Context(), d, l, &issued); err != nil {
			d.kill()
			t.Fatalf("cycle %d: %v\n%s", cycle, err, d.logs)
		}
		if cycle == *kills {
			if n := l.unresolved(); len(n) != 0 {
				t.Errorf("measurements without a result after the last restart: %v", n)
			}
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}
			break
		}
		// Kill after a random number of acknowledged loads, 0 to 5: the
		// signal lands wherever the other clients' requests are.
		target := randInt(6)
		var acked atomic.Int64
		ackedCh := make(chan struct{}, 1)
		var killing atomic.Bool
		var wg sync.WaitGroup
		from := l.Len()
		for c := range *killClients {
			wg.Go(func() {
				for i := 0; ; i++ {
					var err error
					if c%2 == 0 {
						var r *pb.LoadResponse
						issued.Add(1)
						if r, err = d.local.Load(context.Background(), &pb.LoadRequest{Artifact: artifact}); err == nil {
							l.ackLoad(r)
						}
					} else {
						var ev *pb.Evidence
						if ev, err = d.remote.Quote(context.Background(), &pb.QuoteRequest{Nonce: nonce(), FromRecord: from}); err == nil {
							err = l.ackQuote(ev)
						}
					}
					if err != nil {
						if !killing.Load() {
							t.Errorf("cycle %d: client %d request %d failed before the kill: %v", cycle, c, i, err)
						}
						return
					}
					if c%2 == 0 && acked.Add(1) >= target {
						select {
						case ackedCh <- struct{}{}:
						default:
						}
					}
				}
			})
		}
		if target > 0 {
			<-ackedCh
		}
		killing.Store(true)
		if err := d.kill(); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if *verbose && (cycle+1)%50 == 0 {
			t.Logf("%d kills in %v: %+v", cycle+1, time.Since(start).Round(time.Second), l.Stats())
		}
	}
	elapsed := time.Since(start)

	// The whole log, read from disk, against the PCR read from the TPM.
	out, err := exec.Command(cliBinary, "log", "--dir", args[indexOf(args, "--state-dir")+1],
		"--verify-against-pcr", "--tpm", sw.Spec()).CombinedOutput()
	if err != nil {
		t.Fatalf("bpfattest log --verify-against-pcr: %v\n%s", err, tail(out))
	}
	st := l.Stats()
	t.Logf("%d SIGKILLs in %v (%.3f s/kill); %d daemon starts; records %d (%d batch records, %d events): measurements %d, results %d (aborted %d), "+
		"recoveries: rolled forward %d, discarded tail %d; acknowledged loads %d, quotes %d, all found; load requests sent %d; "+
		"lost 0, duplicated 0, divergences 0; CLI: %s",
		*kills, elapsed.Round(time.Second), elapsed.Seconds()/float64(max(*kills, 1)), st.AgentStarts, st.Records, st.Batches, st.Events,
		st.Measurements, st.Results, st.Aborted, st.RolledForward, st.DiscardedTail, st.LoadsAcked, st.QuotesAcked,
		issued.Load(), lastLine(out))
}

// verify ingests a quote from where the ledger stopped and settles every
// acknowledgement: after a restart none may be pending.
func verify(ctx context.Context, d *daemon, l *ledger, issued *atomic.Int64) error {
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
	pending, err := l.settle()
	if err != nil {
		return err
	}
	if pending != 0 {
		return errors.New("lost: acknowledgements beyond the end of the log after a restart")
	}
	return nil
}

func fixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.LskelFile(t, "headers/counter.signed.lskel.h"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nonce() []byte {
	n := make([]byte, 32)
	rand.Read(n)
	return n
}

func randInt(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return v.Int64()
}

func tail(b []byte) []byte {
	if len(b) > 4096 {
		return b[len(b)-4096:]
	}
	return b
}

func lastLine(b []byte) string {
	s := string(b)
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}
