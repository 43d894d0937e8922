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
)

// Binaries built once by TestMain.
var daemonBinary, cliBinary string

func TestMain(m *testing.M) {
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
