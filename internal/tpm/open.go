package tpm

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// openTransport maps a spec (see Open) to a transport.
func openTransport(ctx context.Context, spec string) (transport.TPMCloser, kind, error) {
	switch {
	case spec == "sim":
		t, err := openSimulator()
		return t, kindSimulator, err
	case strings.HasPrefix(spec, "swtpm:unix:"):
		t, err := dialStream(ctx, "unix", strings.TrimPrefix(spec, "swtpm:unix:"))
		return t, kindSwtpm, err
	case strings.HasPrefix(spec, "swtpm:tcp:"):
		t, err := dialStream(ctx, "tcp", strings.TrimPrefix(spec, "swtpm:tcp:"))
		return t, kindSwtpm, err
	case strings.HasPrefix(spec, "/dev/"):
		t, err := linuxtpm.Open(spec)
		if err != nil {
			return nil, 0, err
		}
		k := kindDevice
		if strings.HasPrefix(spec, "/dev/tpmrm") {
			k = kindRM
		}
		return t, k, nil
	default:
		return nil, 0, fmt.Errorf("%w: want sim, swtpm:unix:PATH, swtpm:tcp:HOST:PORT or /dev/tpm…", ErrBadSpec)
	}
}
