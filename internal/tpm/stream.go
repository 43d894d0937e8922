package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

const (
	// headerSize is the TPM 2.0 command and response header: tag u16,
	// size u32, command code or response code u32 (Part 1 §18).
	headerSize = 10
	// maxFrame bounds a command or response. TPMs report 4096 as
	// TPM_PT_MAX_COMMAND_SIZE/RESPONSE_SIZE; the bound leaves room.
	maxFrame = 1 << 16
	// commandTimeout bounds one command on a stream TPM. It matches the
	// Linux driver's longest TPM 2.0 duration (TPM2_DURATION_LONG_LONG).
	commandTimeout = 300 * time.Second
)

// streamTPM speaks raw TPM 2.0 command bytes over a stream socket, as swtpm's
// command channel does. It connects per command: swtpm serves one client
// connection at a time, so holding a connection would lock out every other
// client (tpm2-tools, a second agent) for the Device's lifetime. Each
// response is framed by its header's size field and read in full, unlike a
// single Read that could return a short response.
type streamTPM struct {
	network, addr string
}

// dialStream checks that the endpoint accepts a connection and returns a
// transport for it.
func dialStream(ctx context.Context, network, addr string) (*streamTPM, error) {
	if addr == "" {
		return nil, fmt.Errorf("%w: empty %s address", ErrBadSpec, network)
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("swtpm/dial: %w", err)
	}
	if err := c.Close(); err != nil {
		return nil, fmt.Errorf("swtpm/dial: %w", err)
	}
	return &streamTPM{network: network, addr: addr}, nil
}

// Send implements transport.TPM.
func (s *streamTPM) Send(cmd []byte) (rsp []byte, err error) {
	if len(cmd) < headerSize || len(cmd) > maxFrame {
		return nil, fmt.Errorf("swtpm/send: command of %d bytes", len(cmd))
	}
	c, err := net.DialTimeout(s.network, s.addr, commandTimeout)
	if err != nil {
		return nil, fmt.Errorf("swtpm/dial: %w", err)
	}
	defer func() { err = errors.Join(err, closeErr(c)) }()
	if err := c.SetDeadline(time.Now().Add(commandTimeout)); err != nil {
		return nil, fmt.Errorf("swtpm/send: %w", err)
	}
	if _, err := c.Write(cmd); err != nil {
		return nil, fmt.Errorf("swtpm/send: %w", err)
	}
	return readFrame(c)
}

// readFrame reads one response: the header, then exactly the rest of the
// size it announces.
func readFrame(r io.Reader) ([]byte, error) {
	hdr := make([]byte, headerSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("swtpm/recv: header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < headerSize || size > maxFrame {
		return nil, fmt.Errorf("swtpm/recv: response size field %d out of range [%d, %d]", size, headerSize, maxFrame)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(r, rsp[headerSize:]); err != nil {
		return nil, fmt.Errorf("swtpm/recv: body of a %d-byte response: %w", size, err)
	}
	return rsp, nil
}

func closeErr(c net.Conn) error {
	if err := c.Close(); err != nil {
		return fmt.Errorf("swtpm/close: %w", err)
	}
	return nil
}

// Close implements transport.TPMCloser. There is no standing connection.
func (s *streamTPM) Close() error { return nil }
