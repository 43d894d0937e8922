package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// The crash tests run the test binary itself as the agent: with
// childEnv set, TestMain runs crashChild instead of the tests. The child
// opens the journal on a swtpm and appends numbered events; the parent kills
// it with SIGKILL, either at a chosen step of the write protocol (the child
// announces the step and waits) or after a chosen number of appends (the
// kill then lands wherever the child is in its next append).
const (
	childEnv   = "BPFATTEST_JOURNAL_CHILD"
	childDir   = "BPFATTEST_JOURNAL_DIR"
	childTPM   = "BPFATTEST_JOURNAL_TPM"
	childFirst = "BPFATTEST_JOURNAL_FIRST"
	childStop  = "BPFATTEST_JOURNAL_STOP" // "<step>:<occurrence>"
	// childAppenders is how many goroutines append at once (default 1):
	// with more, appends share commits and the log holds batch records.
	childAppenders = "BPFATTEST_JOURNAL_APPENDERS"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// crashChild is the agent process of the crash tests. It prints "OPEN",
// then "OK <n>" after each append of event n returns, and "STOP <step>"
// when it reaches the step it was told to stop at, where it blocks until
// killed.
func crashChild() int {
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	dev, err := tpm.Open(context.Background(), os.Getenv(childTPM))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	first, _ := strconv.Atoi(os.Getenv(childFirst))
	opts := options(dev)
	if stop := os.Getenv(childStop); stop != "" {
		name, nth, _ := strings.Cut(stop, ":")
		n, _ := strconv.Atoi(nth)
		seen := 0
		opts.hook = func(s step) {
			if s.String() != name {
				return
			}
			if seen++; seen == n {
				say("STOP %s", s)
				select {} // wait for SIGKILL
			}
		}
	}
	j, err := Open(context.Background(), os.Getenv(childDir), dev, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	say("OPEN")
	appenders, _ := strconv.Atoi(os.Getenv(childAppenders))
	if appenders <= 1 {
		for n := first; ; n++ {
			if _, err := j.Append(context.Background(), cel.BPFMeasurement, eventContent(n)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 4
			}
			say("OK %d", n)
		}
	}
	// Concurrent appenders take event numbers from one counter: the log
	// holds them in the order their commits took them.
	var next atomic.Int64
	next.Store(int64(first))
	failed := make(chan struct{})
	var once sync.Once
	for range appenders {
		go func() {
			for {
				n := int(next.Add(1) - 1)
				if _, err := j.Append(context.Background(), cel.BPFMeasurement, eventContent(n)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					once.Do(func() { close(failed) })
					return
				}
				say("OK %d", n)
			}
		}()
	}
	<-failed
	return 4
}

func eventContent(n int) []byte { return fmt.Appendf(nil, "event-%06d", n) }

// crashRig drives child processes against one swtpm and one state
// directory, and checks the log after every kill.
type crashRig struct {
	t     *testing.T
	sw    *tpmtest.Swtpm
	dev   *tpm.Device
	dir   string
	acked int // highest event number an Append returned for; -1: none
	next  int // first event number the next child appends
	// appenders is how many goroutines each child appends with; with
	// more than one, ackedSet holds every acknowledged event number.
	appenders int
	ackedSet  map[int]bool
	batches   int // batch records in the logs at the last check
	kills     int
	// Outcomes of the reconciliations the checks ran.
	clean, rolled, discarded int
}

// run starts a child. With stop set it kills the child when it announces
// the stop; otherwise it kills it right after it reported afterOK appends.
func (r *crashRig) run(stop string, afterOK int) {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDir+"="+r.dir, childTPM+"="+r.sw.Spec(),
		childFirst+"="+strconv.Itoa(r.next), childStop+"="+stop, childAppenders+"="+strconv.Itoa(r.appenders))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	oks := 0
	killed := false
	for !killed && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "OK "):
			n, _ := strconv.Atoi(strings.TrimPrefix(line, "OK "))
			r.ack(n)
			oks++
			if stop == "" && oks == afterOK {
				killed = true
			}
		case strings.HasPrefix(line, "STOP "):
			killed = true
		case line == "OPEN":
			if stop == "" && afterOK == 0 {
				killed = true
			}
		}
	}
	if !killed {
		cmd.Wait()
		r.t.Fatalf("child (stop %q) ended on its own: %s", stop, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatal(err)
	}
	// The child went on appending until the signal landed: every OK it
	// printed is an acknowledged event.
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "OK "); ok {
			v, _ := strconv.Atoi(n)
			r.ack(v)
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		r.t.Fatalf("child did not die of SIGKILL: %v: %s", err, stderr.String())
	}
	r.kills++
}

// check reopens the journal in this process (reconciling what the killed
// child left), and checks that the log replays to the PCR and holds every
// acknowledged event exactly once, in order, plus at most the one event
// that was in flight.
func (r *crashRig) check() {
	r.t.Helper()
	j, err := Open(context.Background(), r.dir, r.dev, options(r.dev))
	if err != nil {
		r.t.Fatalf("after %d kills: reopen: %v", r.kills, err)
	}
	defer j.Close()
	recs := checkReplay(r.t, j, r.dev)
	all := r.allEvents()
	if r.appenders > 1 {
		r.checkSet(all)
	} else if len(all) < r.acked+1 || len(all) > r.acked+2 {
		r.t.Fatalf("after %d kills: %d events in the logs, %d acknowledged", r.kills, len(all), r.acked+1)
	}
	for i, e := range all {
		if r.appenders > 1 {
			break
		}
		if e != string(eventContent(i)) {
			r.t.Fatalf("after %d kills: event %d is %q: lost or duplicated", r.kills, i, e)
		}
	}
	if r.appenders <= 1 {
		r.next = len(all)
		r.acked = len(all) - 1
	}
	// Count what this reopen did.
	last := recs[len(recs)-1]
	if last.Type != cel.AgentStart {
		r.t.Fatalf("last record is %v", last.Type)
	}
	rs := recoveries(r.t, recs[lastAgentStart(recs[:len(recs)-1])+1:])
	switch {
	case len(rs) == 0:
		r.clean++
	case rs[0].Action == cel.RolledForward:
		r.rolled++
	default:
		r.discarded++
	}
}

// ack notes that the child acknowledged event n.
func (r *crashRig) ack(n int) {
	r.acked = max(r.acked, n)
	if r.ackedSet != nil {
		r.ackedSet[n] = true
	}
}

// checkSet is check's rule for concurrent appenders, whose events are in
// the log in commit order: every event at most once, every acknowledged
// event there, and no more unacknowledged ones than the appenders had in
// flight (one commit's worth: a batch durable and not extended is rolled
// forward whole). The next child numbers its events after all of them.
func (r *crashRig) checkSet(all []string) {
	r.t.Helper()
	seen := map[int]bool{}
	top := -1
	for _, e := range all {
		var n int
		if _, err := fmt.Sscanf(e, "event-%d", &n); err != nil {
			r.t.Fatalf("after %d kills: event %q: %v", r.kills, e, err)
		}
		if seen[n] {
			r.t.Fatalf("after %d kills: event %d twice", r.kills, n)
		}
		seen[n] = true
		top = max(top, n)
	}
	for n := range r.ackedSet {
		if !seen[n] {
			r.t.Fatalf("after %d kills: acknowledged event %d lost", r.kills, n)
		}
	}
	if extra := len(seen) - len(r.ackedSet); extra > r.appenders {
		r.t.Fatalf("after %d kills: %d events in the logs that no append acknowledged, %d appenders", r.kills, extra, r.appenders)
	}
	r.ackedSet = seen
	r.acked = top
	r.next = max(r.next, top+1)
}

// allEvents returns the events of every boot's log, oldest boot first,
// and counts the logs' batch records.
func (r *crashRig) allEvents() []string {
	r.t.Helper()
	boots, err := Boots(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	r.batches = 0
	for _, b := range boots {
		lg, err := ReadFile(b.Path)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, events(lg.Records)...)
		for _, rec := range lg.Records {
			if rec.Type == cel.Batch {
				r.batches++
			}
		}
	}
	return out
}

func lastAgentStart(recs []cel.Record) int {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Type == cel.AgentStart {
			return i
		}
	}
	return -1
}

// TestCrash kills real agent processes with SIGKILL at every step boundary
// of the write protocol and at random points, and checks after each
// restart that the log replays to the PCR with no event lost or duplicated.
func TestCrash(t *testing.T) { crashTest(t, 1) }

// TestCrashBatches is TestCrash with four goroutines appending in each
// agent process: commits carry batch records, kills land inside batch
// commits (a torn batch, a batch durable and not extended, extended and
// not acknowledged), and after every restart the log still replays to the
// PCR with every acknowledged event once and at most one commit's worth
// of unacknowledged ones (docs/crash-safety.md §7).
func TestCrashBatches(t *testing.T) { crashTest(t, 4) }

func crashTest(t *testing.T, appenders int) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	r := &crashRig{t: t, sw: sw, dev: tpmtest.Open(t, sw.Spec()), dir: t.TempDir(), acked: -1, appenders: appenders}
	if appenders > 1 {
		r.ackedSet = map[int]bool{}
	}

	// Every step of Append, at the first appends of a process (its own
	// Recovery/AgentStart records) and at later BPF records.
	for _, s := range []step{stepWritePartial, stepWritten, stepSynced, stepExtended} {
		for _, nth := range []int{1, 2, 4} {
			r.run(fmt.Sprintf("%s:%d", s, nth), 0)
			r.check()
		}
	}
	// Kills during reconciliation itself: a pending record, then a kill
	// after rolling it forward but before the Recovery record.
	r.run(stepSynced.String()+":3", 0)
	r.run(stepRolledForward.String()+":1", 0)
	r.check()
	// A torn tail, then a kill after keeping it aside but before cutting it.
	r.run(stepWritePartial.String()+":3", 0)
	r.run(stepTailQuarantined.String()+":1", 0)
	r.check()
	// A new boot, killed while creating its log, at each step.
	for _, s := range []step{stepHeaderSynced, stepHeaderRenamed} {
		if err := sw.Reboot(); err != nil {
			t.Fatal(err)
		}
		r.run(s.String()+":1", 0)
		r.check()
	}
	// Random points: the child is killed right after its k-th append
	// returned, while it is somewhere in the next one.
	rng := rand.New(rand.NewPCG(42, 1))
	for i := range 80 {
		if i%20 == 19 {
			if err := sw.Reboot(); err != nil {
				t.Fatal(err)
			}
		}
		r.run("", rng.IntN(5))
		r.check()
	}
	boots, _ := Boots(r.dir)
	t.Logf("%d appenders, %d SIGKILLs, %d events, %d batch records, %d boots; reopen found: %d clean, %d rolled forward, %d tails discarded",
		appenders, r.kills, r.next, r.batches, len(boots), r.clean, r.rolled, r.discarded)
	if r.rolled == 0 || r.discarded == 0 {
		t.Fatal("the kills never produced a record to roll forward or a tail to discard")
	}
	if appenders > 1 && r.batches == 0 {
		t.Fatal("concurrent appenders never shared a commit: no batch record in the logs")
	}
}

// TestLockedAcrossProcesses: while a live agent process holds the state
// directory, another process's Open fails at once with ErrLocked naming
// the holder.
func TestLockedAcrossProcesses(t *testing.T) {
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	r := &crashRig{t: t, sw: sw, dev: tpmtest.Open(t, sw.Spec()), dir: t.TempDir(), acked: -1}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDir+"="+r.dir, childTPM+"="+sw.Spec(),
		childFirst+"=0", childStop+"="+stepExtended.String()+":3")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "STOP") {
	}
	_, err = Open(context.Background(), r.dir, r.dev, options(r.dev))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("open while another process holds the journal: %v", err)
	}
}
