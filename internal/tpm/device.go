package tpm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Device is one open TPM. It owns the transport and serialises every command
// it sends with an internal mutex, so it is safe for concurrent use.
// Operations that need several commands to see a consistent TPM (Quote reads
// the PCRs and quotes them) run them all under that mutex.
type Device struct {
	mu     sync.Mutex
	tpm    transport.TPMCloser // guarded by mu
	closed bool                // guarded by mu

	// Immutable after Open.
	kind  kind
	banks []crypto.Hash
	npcrs int
}

// kind says what sits behind the transport, which decides what Open may do
// to it (start it up, flush stray handles).
type kind int

const (
	kindSimulator kind = iota + 1 // in-process reference simulator
	kindSwtpm                     // swtpm command channel
	kindDevice                    // /dev/tpm0: a raw TPM, no resource manager
	kindRM                        // /dev/tpmrm0: the kernel resource manager
)

// Open opens a TPM by spec:
//
//   - "sim": the in-process reference simulator (cgo builds only;
//     errors.ErrUnsupported otherwise). Every Open manufactures it afresh with
//     random seeds, and Close discards it: nothing survives, so an AK blob
//     stored from one simulator is ErrAKStale on the next. Only one
//     simulator exists per process: a second Open("sim") blocks until the
//     first Device is closed.
//   - "swtpm:unix:PATH": a swtpm command channel on a unix socket.
//   - "swtpm:tcp:HOST:PORT": a swtpm command channel on TCP.
//   - "/dev/tpmrm0", "/dev/tpm0" (any path under /dev/): a kernel TPM device.
//
// On the simulator and swtpm, Open issues TPM2_Startup(CLEAR) (accepting a
// TPM that is already started) and flushes any transient objects and
// sessions left behind by earlier clients, since those TPMs have no resource
// manager. It then discovers the active PCR banks.
func Open(ctx context.Context, spec string) (*Device, error) {
	t, k, err := openTransport(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("tpm/open %q: %w", spec, err)
	}
	d := &Device{tpm: t, kind: k}
	if err := d.init(); err != nil {
		return nil, errors.Join(fmt.Errorf("tpm/open %q: %w", spec, err), t.Close())
	}
	return d, nil
}

func (d *Device) init() error {
	if d.kind == kindSimulator || d.kind == kindSwtpm {
		// Emulators the platform may not have started, and that have no
		// resource manager to clean up after earlier clients.
		_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(d.tpm)
		if err != nil && !errors.Is(err, tpm2.TPMRCInitialize) {
			return fmt.Errorf("startup: %w", err)
		}
		if err := flushAll(d.tpm); err != nil {
			return err
		}
	}
	banks, err := activeBanks(d.tpm)
	if err != nil {
		return err
	}
	n, err := pcrCount(d.tpm)
	if err != nil {
		return err
	}
	d.banks, d.npcrs = banks, n
	return nil
}

// Close closes the transport. For the simulator it also powers the
// simulated TPM off, which discards its state.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed = true
	if err := d.tpm.Close(); err != nil {
		return fmt.Errorf("tpm/close: %w", err)
	}
	return nil
}

// do runs f with the raw transport under the mutex.
func (d *Device) do(f func(t transport.TPM) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return f(d.tpm)
}

// Banks returns the active PCR banks the TPM reported at Open, in ascending
// TPM algorithm order. Banks whose hash Go does not implement (SM3) are left
// out. The slice is a copy.
func (d *Device) Banks() []crypto.Hash { return slices.Clone(d.banks) }

func (d *Device) bankActive(h crypto.Hash) bool { return slices.Contains(d.banks, h) }

func (d *Device) checkPCR(pcr int) error {
	if pcr < 0 || pcr >= d.npcrs {
		return fmt.Errorf("%w: %d (tpm has %d)", ErrBadPCR, pcr, d.npcrs)
	}
	return nil
}
