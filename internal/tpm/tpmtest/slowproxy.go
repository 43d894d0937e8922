package tpmtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CCQuote is the command code of TPM2_Quote (TPM 2.0 Part 2 §6.5.2,
// TPM_CC_Quote).
const CCQuote uint32 = 0x00000158

// CCPCRExtend is the command code of TPM2_PCR_Extend (TPM 2.0 Part 2
// §6.5.2, TPM_CC_PCR_Extend).
const CCPCRExtend uint32 = 0x00000182

// tpmHeader is the size of a TPM 2.0 command or response header: tag u16,
// size u32, command or response code u32 (TPM 2.0 Part 1 §18).
const tpmHeader = 10

// maxTPMFrame bounds a frame the proxy forwards.
const maxTPMFrame = 1 << 16

// SlowProxy sits in front of a TPM command socket (a Swtpm's) and holds the
// response to each command with a chosen code for a fixed delay before
// passing it on: a fast software TPM made as slow as a hardware TPM for
// those commands (a discrete TPM takes tens to hundreds of milliseconds to
// sign a quote). Every other command passes through at once. It speaks the
// raw command stream swtpm's unix socket does, frame by frame, any number
// of commands per connection.
type SlowProxy struct {
	upstream string
	delay    time.Duration
	codes    []uint32
	path     string
	ln       *net.UnixListener
	quit     chan struct{}
	wg       sync.WaitGroup
	delayed  atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool // open client connections; guarded by mu
}

// StartSlowProxy listens on a new unix socket that forwards to the TPM
// command socket at upstream (Swtpm.SocketPath), holding the responses to
// the listed command codes (CCQuote, …) for delay. It stops in tb.Cleanup.
func StartSlowProxy(tb testing.TB, upstream string, delay time.Duration, codes ...uint32) *SlowProxy {
	tb.Helper()
	dir, err := os.MkdirTemp("", "tpmproxy")
	if err != nil {
		tb.Fatalf("slow proxy: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	p := &SlowProxy{upstream: upstream, delay: delay, codes: slices.Clone(codes),
		path: filepath.Join(dir, "tpm.sock"), quit: make(chan struct{}), conns: map[net.Conn]bool{}}
	p.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: p.path, Net: "unix"})
	if err != nil {
		tb.Fatalf("slow proxy: %v", err)
	}
	p.wg.Add(1)
	go p.accept(tb)
	tb.Cleanup(p.stop)
	return p
}

// Spec returns the tpm.Open spec of the proxy's socket.
func (p *SlowProxy) Spec() string { return "swtpm:unix:" + p.path }

// Delayed returns how many responses the proxy has held so far.
func (p *SlowProxy) Delayed() int64 { return p.delayed.Load() }

// stop closes the listener and every client connection, releases held
// responses and waits for the proxy's goroutines to end.
func (p *SlowProxy) stop() {
	close(p.quit)
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track records an open client connection, or refuses it after stop.
func (p *SlowProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.quit:
		return false
	default:
	}
	p.conns[c] = true
	return true
}

func (p *SlowProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *SlowProxy) accept(tb testing.TB) {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptUnix()
		if err != nil {
			select {
			case <-p.quit:
			default:
				tb.Errorf("slow proxy: accept: %v", err)
			}
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			if err := p.serve(c); err != nil {
				select {
				case <-p.quit: // closed under it by stop
				default:
					tb.Logf("slow proxy: %v", err)
				}
			}
		}()
	}
}

// serve forwards the client's commands one at a time over one upstream
// connection, until the client closes.
func (p *SlowProxy) serve(c net.Conn) error {
	var up net.Conn
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	for {
		cmd, err := readFrame(c)
		if errors.Is(err, io.EOF) {
			return nil // the client is done (or only probed the socket)
		}
		if err != nil {
			return fmt.Errorf("read command: %w", err)
		}
		if up == nil {
			if up, err = net.Dial("unix", p.upstream); err != nil {
				return fmt.Errorf("dial tpm: %w", err)
			}
		}
		if _, err := up.Write(cmd); err != nil {
			return fmt.Errorf("forward command: %w", err)
		}
		rsp, err := readFrame(up)
		if err != nil {
			return fmt.Errorf("read response: %w", err)
		}
		if slices.Contains(p.codes, binary.BigEndian.Uint32(cmd[6:])) {
			p.delayed.Add(1)
			t := time.NewTimer(p.delay)
			select {
			case <-t.C:
			case <-p.quit:
				t.Stop()
			}
		}
		if _, err := c.Write(rsp); err != nil {
			return fmt.Errorf("forward response: %w", err)
		}
	}
}

// readFrame reads one command or response, framed by its header's size
// field. io.EOF means the stream ended cleanly before a frame.
func readFrame(r io.Reader) ([]byte, error) {
	h := make([]byte, tpmHeader)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[2:])
	if n < tpmHeader || n > maxTPMFrame {
		return nil, fmt.Errorf("frame size %d", n)
	}
	b := make([]byte, n)
	copy(b, h)
	if _, err := io.ReadFull(r, b[tpmHeader:]); err != nil {
		return nil, fmt.Errorf("frame body: %w", io.ErrUnexpectedEOF)
	}
	return b, nil
}
