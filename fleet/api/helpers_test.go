package api_test

import (
	"context"
	"errors"
	"testing"
)

var errStopped = errors.New("stopped")

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
