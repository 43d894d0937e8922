package cel_test

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/cel"
)

// kernelBoot is a boot header with the kernel's facts.
func kernelBoot() cel.BootInfo {
	return cel.BootInfo{BootID: "id", ResetCount: 1, PCR: 14, Start: zeros([]crypto.Hash{crypto.SHA256}),
		Kernel: &cel.KernelInfo{Release: "6.18.4-bpfattest", Lockdown: "integrity",
			UnprivilegedBPFDisabled: 2, BPFJITEnable: 1, BPFJITHarden: 0, BPFJITKallsyms: cel.SysctlUnread}}
}

// TestBootInfoKernel round-trips a boot header with the kernel's facts,
// shows that a header without them (as older agents wrote) still parses
// and encodes as before, and renders the facts in both exports.
func TestBootInfoKernel(t *testing.T) {
	boot := kernelBoot()
	b := mustMarshal(t, &boot)
	got, err := cel.ParseBootInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(boot, got); diff != "" {
		t.Errorf("boot info (-want +got):\n%s", diff)
	}
	old := boot
	old.Kernel = nil
	ob := mustMarshal(t, &old)
	if !bytes.HasPrefix(b, ob) {
		t.Error("the kernel field is not appended after the fields of an older header")
	}
	if got, err := cel.ParseBootInfo(ob); err != nil || got.Kernel != nil {
		t.Errorf("older header: kernel %+v, %v", got.Kernel, err)
	}
	k, err := boot.Kernel.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cel.ParseKernelInfo(k); err != nil || !cmp.Equal(got, boot.Kernel) {
		t.Errorf("kernel info alone: %+v, %v", got, err)
	}

	rec := mustRecord(t, 0, 14, []crypto.Hash{crypto.SHA256}, cel.BootHeader, b)
	var text, js bytes.Buffer
	if err := cel.WriteText(&text, []cel.Record{rec}, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kernel.release=6.18.4-bpfattest", "kernel.lockdown=integrity",
		"kernel.unprivileged_bpf_disabled=2", "kernel.bpf_jit_harden=0", "kernel.bpf_jit_kallsyms=unread"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text view lacks %q: %s", want, text.String())
		}
	}
	if err := cel.WriteJSON(&js, []cel.Record{rec}, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"lockdown":"integrity"`, `"unprivileged_bpf_disabled":2`, `"bpf_jit_kallsyms":null`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s: %s", want, js.String())
		}
	}
}

// TestBootInfoKernelStrict refuses kernel fields that are not canonical,
// and values that do not fit.
func TestBootInfoKernelStrict(t *testing.T) {
	boot := kernelBoot()
	good := mustMarshal(t, &boot)
	k, err := boot.Kernel.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	prefix := good[:len(good)-len(k)-5]
	field := func(inner []byte) []byte {
		out := append(bytes.Clone(prefix), 8, 0, 0, 0, byte(len(inner)))
		return append(out, inner...)
	}
	// The kernel field: release (1), lockdown (2), four sysctls (3-6).
	sys := func(vals ...[]byte) []byte {
		var b []byte
		for i, v := range vals {
			b = append(b, byte(3+i), 0, 0, 0, byte(len(v)))
			b = append(b, v...)
		}
		return b
	}
	strs := []byte{1, 0, 0, 0, 1, 'r', 2, 0, 0, 0, 0}
	one := []byte{1}
	tests := map[string][]byte{
		"sysctl of two bytes": field(append(bytes.Clone(strs), sys([]byte{1, 0}, one, one, one)...)),
		"sysctl missing":      field(append(bytes.Clone(strs), sys(one, one, one)...)),
		"sysctls reordered":   field(append(bytes.Clone(strs), 4, 0, 0, 0, 0, 3, 0, 0, 0, 0, 5, 0, 0, 0, 0, 6, 0, 0, 0, 0)),
		"no lockdown field":   field(append([]byte{1, 0, 0, 0, 1, 'r'}, sys(one, one, one, one)...)),
		"trailing in kernel":  field(append(append(bytes.Clone(strs), sys(one, one, one, one)...), 7, 0, 0, 0, 0)),
		"field after kernel":  append(bytes.Clone(good), 9, 0, 0, 0, 0),
		"kernel tag 9":        append(append(bytes.Clone(prefix), 9, 0, 0, 0, byte(len(k))), k...),
		"kernel length short": append(append(bytes.Clone(prefix), 8, 0, 0, 0, byte(len(k)+1)), k...),
		"release not utf8":    field(append([]byte{1, 0, 0, 0, 1, 0xff, 2, 0, 0, 0, 0}, sys(one, one, one, one)...)),
		"release of 65 bytes": field(append(append([]byte{1, 0, 0, 0, 65}, bytes.Repeat([]byte{'a'}, 65)...), append([]byte{2, 0, 0, 0, 0}, sys(one, one, one, one)...)...)),
		"empty kernel field":  field(nil),
	}
	for name, b := range tests {
		_, err := cel.ParseBootInfo(b)
		var fe *cel.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, cel.ErrMalformed) {
			t.Errorf("%s: err = %v, want a FieldError", name, err)
		}
	}
	for name, k := range map[string]cel.KernelInfo{
		"sysctl 256":    {UnprivilegedBPFDisabled: 256},
		"sysctl -2":     {BPFJITEnable: -2},
		"long lockdown": {Lockdown: strings.Repeat("x", 65)},
		"long release":  {Release: strings.Repeat("x", 65)},
	} {
		b := kernelBoot()
		b.Kernel = &k
		if _, err := b.MarshalBinary(); err == nil {
			t.Errorf("%s: marshalled", name)
		}
	}
}
