package sdnotify

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) Env { return func(k string) string { return m[k] } }

// listenGram opens a datagram socket to receive notifications on.
func listenGram(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestNotify sends notifications to a socket at a path and to an abstract
// socket ('@' name), the two forms systemd sets.
func TestNotify(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@bpfattest-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(name[:1], func(t *testing.T) {
			c := listenGram(t, name)
			n, err := NewNotifier(envOf(map[string]string{"NOTIFY_SOCKET": name}))
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("not enabled")
			}
			for _, s := range []string{Ready, "STATUS=serving\n" + Watchdog, Stopping} {
				if err := n.Notify(s); err != nil {
					t.Fatal(err)
				}
				if got := recv(t, c); got != s {
					t.Errorf("received %q, want %q", got, s)
				}
			}
		})
	}
}

func TestNotifyWithout(t *testing.T) {
	n, err := NewNotifier(envOf(nil))
	if err != nil || n.Enabled() || n.Notify(Ready) != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v, enabled %v", err, n.Enabled())
	}
	for _, bad := range []string{"relative/path", "@"} {
		if _, err := NewNotifier(envOf(map[string]string{"NOTIFY_SOCKET": bad})); err == nil {
			t.Errorf("NOTIFY_SOCKET %q accepted", bad)
		}
	}
	// A socket that went away is an error to report, not a hang.
	n, _ = NewNotifier(envOf(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone")}))
	if err := n.Notify(Ready); err == nil {
		t.Error("notify to a missing socket succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		env  map[string]string
		want time.Duration
		err  bool
	}{
		{nil, 0, false},
		{map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second, false},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": self}, 15 * time.Second, false},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 0, false},
		{map[string]string{"WATCHDOG_USEC": "0"}, 0, true},
		{map[string]string{"WATCHDOG_USEC": "x"}, 0, true},
		{map[string]string{"WATCHDOG_USEC": "10", "WATCHDOG_PID": "-1"}, 0, true},
	} {
		got, err := WatchdogInterval(envOf(c.env))
		if got != c.want || (err != nil) != c.err {
			t.Errorf("%v: %v, %v; want %v, error %v", c.env, got, err, c.want, c.err)
		}
	}
}

// TestListeners passes a listening unix socket and a TCP socket to a
// child process as descriptors 3 and 4, the way systemd does, and checks
// the child finds them by name, accepts on them, and refuses what is not
// a listening socket.
func TestListeners(t *testing.T) {
	if os.Getenv("SDNOTIFY_TEST_CHILD") != "" {
		return
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	uf, _ := ul.(*net.UnixListener).File()
	tf, _ := tl.(*net.TCPListener).File()
	defer uf.Close()
	defer tf.Close()

	run := func(names string, extra ...*os.File) (string, error) {
		cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^TestListenersChild$", "-test.v")
		cmd.Env = append(os.Environ(), "SDNOTIFY_TEST_CHILD=1", "LISTEN_FDS="+strconv.Itoa(len(extra)), "LISTEN_FDNAMES="+names)
		cmd.ExtraFiles = extra
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, addr := range [][2]string{{"unix", sock}, {"tcp", tl.Addr().String()}} {
			for range 50 {
				if c, err := net.Dial(addr[0], addr[1]); err == nil {
					c.Write([]byte("x"))
					c.Close()
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	out, err := run("local:remote", uf, tf)
	<-done
	if err != nil || !strings.Contains(out, "child ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}

	// A regular file is not a socket: refused, nothing returned.
	f, err := os.CreateTemp(dir, "file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if out, err := run("notasocket", f); err == nil || !strings.Contains(out, "not a listening stream socket") {
		t.Fatalf("child with a file: %v\n%s", err, out)
	}
}

// TestListenersChild is the child of TestListeners.
func TestListenersChild(t *testing.T) {
	if os.Getenv("SDNOTIFY_TEST_CHILD") == "" {
		t.Skip("the child of TestListeners")
	}
	var unset []string
	lns, err := Listeners(os.Getenv, func(k string) error { unset = append(unset, k); return os.Unsetenv(k) })
	if err != nil {
		t.Fatal(err)
	}
	if len(unset) != 3 || os.Getenv("LISTEN_FDS") != "" {
		t.Errorf("unset %v", unset)
	}
	for _, name := range []string{"local", "remote"} {
		if len(lns[name]) != 1 {
			t.Fatalf("listeners %v: want one %q", lns, name)
		}
		c, err := lns[name][0].Accept()
		if err != nil {
			t.Fatalf("%s: accept: %v", name, err)
		}
		c.Close()
		lns[name][0].Close()
	}
	if _, ok := lns["local"][0].(*net.UnixListener); !ok {
		t.Errorf("local is %T", lns["local"][0])
	}
	// Another process's variables are not ours.
	if l, err := Listeners(envOf(map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1"}), nil); l != nil || err != nil {
		t.Errorf("LISTEN_PID of another process: %v, %v", l, err)
	}
	fmt.Println("child ok")
}

func TestListenersBadEnv(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, env := range []map[string]string{
		{"LISTEN_PID": "x", "LISTEN_FDS": "1"},
		{"LISTEN_PID": self, "LISTEN_FDS": "-1"},
		{"LISTEN_PID": self, "LISTEN_FDS": "1000"},
		{"LISTEN_PID": self, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "one"},
	} {
		if _, err := Listeners(envOf(env), nil); err == nil {
			t.Errorf("%v accepted", env)
		}
	}
	if l, err := Listeners(envOf(nil), nil); l != nil || err != nil {
		t.Errorf("no variables: %v, %v", l, err)
	}
}
