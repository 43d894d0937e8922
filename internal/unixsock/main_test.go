package unixsock_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"testing"
)

// connectEnv makes the test binary a peer: it connects to the socket
// named by the variable and holds the connection until its stdin closes.
const connectEnv = "BPFATTEST_UNIXSOCK_TEST_CONNECT"

func TestMain(m *testing.M) {
	if socket := os.Getenv(connectEnv); socket != "" {
		c, err := net.Dial("unix", socket)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(io.Discard, os.Stdin)
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
