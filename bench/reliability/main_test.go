package reliability

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var (
	kills        = flag.Int("kills", 20, "TestKillLoop: how many times the daemon is killed")
	killClients  = flag.Int("kill-clients", 6, "TestKillLoop: concurrent clients (half load, half quote)")
	loadClients  = flag.Int("load-clients", 64, "TestLoad: concurrent clients, each loading and quoting")
	loadDuration = flag.Duration("load-duration", 10*time.Second, "TestLoad: how long the clients run")
	verbose      = flag.Bool("progress", false, "log progress while the harnesses run")

	hostileDuration = flag.Duration("hostile-duration", 10*time.Second, "TestHostile: how long the hostile clients run")
	hostileStreams  = flag.Int("hostile-streams", 1000, "TestHostile: Events streams the attackers keep asking for (half stalled)")
	hostileLoaders  = flag.Int("hostile-loaders", 64, "TestHostile: local clients loading a refused artifact as fast as they are answered")
	hostilePregrow  = flag.Int("hostile-pregrow", 300, "TestHostile: refused loads recorded one by one before the run, to lengthen the log Events reads")
	idleConns       = flag.Int("idle-conns", 1000, "TestIdleConns: idle TCP connections held against the remote API")
	idleTarget      = flag.Duration("idle-target", 0, "TestIdleConns: fail when a quote takes this long or longer (0: report only; the documented run uses 1s)")
	idleRedial      = flag.Duration("idle-redial", time.Second, "TestIdleConns: how long an idle connection the agent closed waits before it is opened again")
)

// Binaries built once by TestMain.
var daemonBinary, cliBinary string

func TestMain(m *testing.M) {
	if os.Getenv(hostileLoaderEnv) != "" {
		// A hostile local client, started by TestHostile as another uid.
		os.Exit(hostileLoader())
	}
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bpfattest-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	daemonBinary = filepath.Join(dir, "bpfattestd")
	cliBinary = filepath.Join(dir, "bpfattest")
	for bin, pkg := range map[string]string{daemonBinary: "../../cmd/bpfattestd", cliBinary: "../../cmd/bpfattest"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n", pkg, err)
			return 1
		}
	}
	return m.Run()
}
