//go:build !linux

package progevents

import (
	"context"
	"errors"
	"fmt"
)

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("program event watcher closed")

// DefaultRingPages is each CPU's data area in pages.
const DefaultRingPages = 64

// Options configure Open.
type Options struct {
	RingPages int
}

// Watcher is not available on this platform.
type Watcher struct{}

// Open returns ErrNotSupported: the platform has no perf events.
func Open(Options) (*Watcher, error) {
	return nil, fmt.Errorf("progevents/open: %w", ErrNotSupported)
}

// Read returns ErrNotSupported.
func (*Watcher) Read(context.Context) (Batch, error) { return Batch{}, ErrNotSupported }

// Wait returns ErrNotSupported.
func (*Watcher) Wait(context.Context) error { return ErrNotSupported }

// Poll returns ErrNotSupported.
func (*Watcher) Poll() (Batch, error) { return Batch{}, ErrNotSupported }

// Close returns ErrNotSupported.
func (*Watcher) Close() error { return ErrNotSupported }
