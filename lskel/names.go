package lskel

import (
	"strings"

	"github.com/cilium/ebpf"
)

// ProgTypeName renders enum bpf_prog_type by cilium/ebpf's name, in lower
// case ("socketfilter", "tracepoint").
func ProgTypeName(t uint32) string {
	return strings.ToLower(ebpf.ProgramType(t).String())
}

// MapTypeName renders enum bpf_map_type by cilium/ebpf's name, in lower
// case ("array", "hash").
func MapTypeName(t uint32) string {
	return strings.ToLower(ebpf.MapType(t).String())
}
