package measure

import "fmt"

// objNameLen is BPF_OBJ_NAME_LEN: the kernel keeps at most 15 bytes of a
// program's name (and a terminating NUL).
const objNameLen = 16

// KernelName is the name the kernel keeps for a program submitted as name.
func KernelName(name string) string {
	if len(name) > objNameLen-1 {
		return name[:objNameLen-1]
	}
	return name
}

// Binding compares the programs a load created, as the kernel reports them
// in the order the loader handed them back, with the programs the
// measurement says the artifact carries, and returns every disagreement in
// words; nil means they agree. It checks the count, and for each program
// its name (as the kernel keeps it), its type and, where the measurement
// determines it (ProgramDigest.TagKnown), its kernel tag. The agent checks
// the kernel's answer with it before it records the result, and a verifier
// checks the records with it: a result that names programs other than the
// measured ones is a lie or a loader that did something else.
func Binding(m *Measurement, progs []KernelObject) []string {
	var out []string
	if len(progs) != len(m.Programs) {
		out = append(out, fmt.Sprintf("the load created %d programs, the measurement has %d", len(progs), len(m.Programs)))
	}
	for i := range min(len(progs), len(m.Programs)) {
		want, got := &m.Programs[i], &progs[i]
		if n := KernelName(want.Name); got.Name != n {
			out = append(out, fmt.Sprintf("program %d (id %d) is named %q, the measurement has %q", i, got.ID, got.Name, n))
		}
		if got.Type != want.Type {
			out = append(out, fmt.Sprintf("program %d (id %d) %q has type %d, the measurement has %d", i, got.ID, got.Name, got.Type, want.Type))
		}
		if want.TagKnown() && got.Tag != want.KernelTag {
			out = append(out, fmt.Sprintf("program %d (id %d) %q has kernel tag %x, the measured instructions give %x", i, got.ID, got.Name, got.Tag, want.KernelTag))
		}
	}
	return out
}
