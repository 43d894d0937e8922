package measure

import (
	"strings"
	"testing"
)

func TestBinding(t *testing.T) {
	insp, err := Inspect(loadFixture(t, "pair.signed.lskel.h"), Options{Trust: fixtureTrust(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := &insp.Measurement
	if len(m.Programs) != 2 || !m.Programs[0].TagKnown() || !m.Programs[1].TagKnown() {
		t.Fatalf("programs %+v: want two with known tags", m.Programs)
	}
	good := func() []KernelObject {
		var out []KernelObject
		for i, p := range m.Programs {
			out = append(out, KernelObject{ID: uint32(100 + i), Type: p.Type, Tag: p.KernelTag, Name: KernelName(p.Name)})
		}
		return out
	}
	if p := Binding(m, good()); p != nil {
		t.Errorf("the measured programs do not bind: %v", p)
	}
	for name, c := range map[string]struct {
		edit func([]KernelObject) []KernelObject
		want string
	}{
		"one missing":  {func(o []KernelObject) []KernelObject { return o[:1] }, "created 1 programs, the measurement has 2"},
		"one more":     {func(o []KernelObject) []KernelObject { return append(o, o[0]) }, "created 3 programs"},
		"other name":   {func(o []KernelObject) []KernelObject { o[1].Name = "evil"; return o }, `named "evil"`},
		"other type":   {func(o []KernelObject) []KernelObject { o[0].Type = 1; return o }, "has type 1"},
		"other tag":    {func(o []KernelObject) []KernelObject { o[0].Tag[7] ^= 1; return o }, "kernel tag"},
		"swapped pair": {func(o []KernelObject) []KernelObject { o[0], o[1] = o[1], o[0]; return o }, "is named"},
	} {
		got := Binding(m, c.edit(good()))
		if !strings.Contains(strings.Join(got, "; "), c.want) {
			t.Errorf("%s: %v, want a problem saying %q", name, got, c.want)
		}
	}
	// Where the tag is not determined it is not checked; the rest is.
	m.Programs[0].KernelTag, m.Programs[0].TagUnpredictable = [8]byte{}, "CO-RE"
	o := good()
	o[0].Tag = [8]byte{1}
	if p := Binding(m, o); p != nil {
		t.Errorf("an undetermined tag was checked: %v", p)
	}
}

func TestKernelName(t *testing.T) {
	if got := KernelName("a_very_long_program_name"); got != "a_very_long_pro" {
		t.Errorf("KernelName = %q", got)
	}
	if got := KernelName("short"); got != "short" {
		t.Errorf("KernelName = %q", got)
	}
}
