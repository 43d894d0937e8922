package lskel

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoad(t *testing.T) {
	header := readLskel(t, "headers/pair.signed.lskel.h")
	a, err := Load(header)
	if err != nil || a.Source != FormatHeader {
		t.Fatalf("Load(header) = %v, %v", a, err)
	}
	b, err := a.MarshalBundle()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(b)
	if err != nil || got.Source != FormatBundle {
		t.Fatalf("Load(bundle) = %v, %v", got, err)
	}
	if diff := cmp.Diff(a, got, ignoreSource); diff != "" {
		t.Errorf("header and bundle differ:\n%s", diff)
	}
	for _, src := range [][]byte{nil, []byte("\x89PNG\r\n\x1a\n")} {
		if _, err := Load(src); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("Load(%q) error %v, want ErrUnknownFormat", src, err)
		}
	}
	if _, err := Load([]byte("int main(void) { return 0; }")); !errors.Is(err, ErrMalformed) {
		t.Errorf("Load(C without arrays) error %v, want ErrMalformed", err)
	}
}

// TestFormatError: parse errors carry the part, position and field, match
// ErrMalformed, and unwrap to the specific cause.
func TestFormatError(t *testing.T) {
	_, err := ParseBundle(buildBundle(1, testRecord{0x8004, make([]byte, MaxSignatureSize+1)}))
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FormatError", err)
	}
	if fe.Part != "bundle" || fe.Where != "offset 12" || fe.Field != "record 0x8004 (signature)" {
		t.Errorf("FormatError %+v", fe)
	}
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnknownFormat) {
		t.Errorf("errors.Is: malformed %v, too large %v, unknown format %v", errors.Is(err, ErrMalformed), errors.Is(err, ErrTooLarge), errors.Is(err, ErrUnknownFormat))
	}
	if want := "bundle: offset 12: record 0x8004 (signature): size 8193 exceeds limit 8192: over limit"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}
