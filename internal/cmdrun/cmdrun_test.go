package cmdrun

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"testing"
)

func TestRun(t *testing.T) {
	failed := errors.New("the TPM is gone")
	for _, tc := range []struct {
		name     string
		parseErr error
		serveErr error
		code     int
		stderr   string
	}{
		{"served", nil, nil, ExitOK, ""},
		{"help", flag.ErrHelp, nil, ExitOK, ""},
		{"bad flag", errors.New("flag provided but not defined: -x"), nil, ExitUsage, "d: flag provided but not defined: -x\n"},
		{"bad config found while serving", nil, fmt.Errorf("%w: --listen: no port", ErrUsage), ExitUsage, "d: usage: --listen: no port\n"},
		{"failed", nil, failed, ExitFailed, "d: the TPM is gone\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			served := false
			code := Run(t.Context(), "d", []string{"-a"}, &stderr,
				func(args []string, _ io.Writer) (string, error) { return args[0], tc.parseErr },
				func(_ context.Context, cfg string, _ io.Writer) error {
					served = true
					if cfg != "-a" {
						t.Errorf("served with %q, want the parsed -a", cfg)
					}
					return tc.serveErr
				})
			if code != tc.code || stderr.String() != tc.stderr {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr.String(), tc.code, tc.stderr)
			}
			if served != (tc.parseErr == nil) {
				t.Errorf("served %v after a parse error %v", served, tc.parseErr)
			}
		})
	}
}
