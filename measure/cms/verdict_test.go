package cms

import (
	"errors"
	"testing"
)

func TestVerdictText(t *testing.T) {
	want := []string{"NONE", "OK", "UNSIGNED", "PARTIALSIG", "UNKNOWNKEY", "UNEXPECTED", "FAULT", "BADSIG"}
	for i, w := range want {
		v := Verdict(i)
		if v.String() != w {
			t.Errorf("Verdict(%d).String() = %q, want %q", i, v.String(), w)
		}
		b, err := v.MarshalText()
		if err != nil || string(b) != w {
			t.Errorf("MarshalText(%d) = %q, %v", i, b, err)
		}
		var back Verdict
		if err := back.UnmarshalText(b); err != nil || back != v {
			t.Errorf("UnmarshalText(%q) = %d, %v", b, back, err)
		}
	}
	if _, err := Verdict(8).MarshalText(); !errors.Is(err, ErrUnknownVerdict) {
		t.Errorf("MarshalText(8): %v", err)
	}
	var v Verdict
	if err := v.UnmarshalText([]byte("ok")); !errors.Is(err, ErrUnknownVerdict) {
		t.Errorf("UnmarshalText(ok): %v", err)
	}
	if Verdict(9).String() != "Verdict(9)" {
		t.Errorf("String(9) = %s", Verdict(9))
	}
}
