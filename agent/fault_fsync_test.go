package agent_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// failingDisk mounts an ext4 file system whose block device is a loop
// device over a sparse 32 MiB image on a 4 MiB tmpfs. The file system
// believes it has room, so writes succeed into the page cache; once the
// tmpfs is full, writeback of new blocks fails in the loop driver and
// fsync returns the error (ENOSPC from the loop driver, EIO elsewhere). It returns the ext4 mount
// point and the tmpfs directory (to fill). Cleanup unmounts everything.
func failingDisk(t *testing.T) (mnt, backing string) {
	t.Helper()
	mkfs := testutil.RequireTool(t, "mkfs.ext4")
	losetup := testutil.RequireTool(t, "losetup")
	backing = smallTmpfs(t, "4m")
	img := filepath.Join(backing, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-O", "^has_journal", "-E", "nodiscard,lazy_itable_init=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	out, err := exec.Command(losetup, "--find", "--show", img).CombinedOutput()
	if err != nil {
		testutil.SkipEnv(t, "losetup: %v\n%s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	})
	mnt = t.TempDir()
	if err := syscall.Mount(loop, mnt, "ext4", 0, ""); err != nil {
		testutil.SkipEnv(t, "mount ext4 on %s: %v", loop, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt, backing
}

// TestFaultFsyncFails: the state directory's disk fails under the agent,
// so the log's write reaches the page cache but fsync fails. The load
// fails closed with ErrUnavailable (before any bpf() call when it is the
// measurement's fsync that fails), and the journal
// refuses every later load and quote, even once the disk works again,
// because after a failed fsync only a reconcile can say what is on disk.
// A restarted agent reconciles (the PCR never saw the record) and serves a
// log that replays.
func TestFaultFsyncFails(t *testing.T) {
	requireKernel(t)
	sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
	state, backing := failingDisk(t)
	cfg := config(t)
	cfg.TPM, cfg.StateDir = sw.Spec(), state
	steps := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { steps++; return nil })
	a, err := agent.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() }) // closed below; this covers a failure before
	src := header(t, "counter", true)
	if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src}); err != nil {
		t.Fatalf("load on a working disk: %v", err)
	}
	filler := fill(t, backing)

	// Blocks whose backing pages exist still write; load until writeback
	// needs a new one.
	var before int
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("200 loads succeeded on a failing disk")
		}
		before = steps
		_, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src})
		if err == nil {
			continue
		}
		// The loop driver passes the backing file's ENOSPC up as the
		// block status; other devices say EIO.
		if !errors.Is(err, agent.ErrUnavailable) || !(errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC)) {
			t.Fatalf("load %d with fsync failing: %v, want ErrUnavailable wrapping EIO or ENOSPC", i, err)
		}
		t.Logf("fsync failed at load %d: %v", i, err)
		break
	}
	if steps != before {
		// The measurement was durable and extended, the result's fsync
		// failed: the objects were closed, and the journal is broken.
		t.Logf("the failing fsync was the result's: %d bpf() steps had run", steps-before)
		before = steps
	}
	if err := filler.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src}); !errors.Is(err, agent.ErrUnavailable) {
		t.Errorf("load after a failed fsync, disk working again: %v, want ErrUnavailable until restarted", err)
	}
	if _, err := a.Quote(t.Context(), nonce(1), 0); !errors.Is(err, agent.ErrUnavailable) {
		t.Errorf("quote after a failed fsync: %v, want ErrUnavailable", err)
	}
	if steps != before {
		t.Errorf("bpf() steps run after a failed fsync: %d", steps-before)
	}
	a.Close()

	b := newAgent(t, cfg)
	if _, err := b.Load(t.Context(), agent.LoadRequest{Artifact: src}); err != nil {
		t.Fatalf("load after the restart: %v", err)
	}
	ev, err := b.Quote(t.Context(), nonce(2), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEvidence(t, b, ev)
}
