package bootchain

import (
	"errors"
	"testing"
)

// TestGuard: a panic inside a guarded go-attestation call becomes a
// Malformed *Error naming the call; errors pass through.
func TestGuard(t *testing.T) {
	err := guard("ParseEventLog", func() error {
		var b []byte
		return errors.New(string(b[:1])) // out of range: a runtime panic
	})
	var e *Error
	if !errors.As(err, &e) || e.Reason != Malformed || !errors.Is(err, Malformed) {
		t.Fatalf("panic: %v", err)
	}
	t.Log(err)
	want := errors.New("parse error")
	if err := guard("ParseEventLog", func() error { return want }); err != want {
		t.Errorf("error: %v", err)
	}
}
