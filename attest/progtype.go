package attest

// ProgramTypeName names a program type (enum bpf_prog_type) as a policy's
// allowed_program_types takes it: the constant's suffix in lower case
// ("tracepoint", "socket_filter"), or the decimal number for a type newer
// than this table. ParsePolicy accepts both forms.
func ProgramTypeName(t uint32) string { return progTypeName(t) }
