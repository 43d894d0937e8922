package main

import (
	"strings"

	"github.com/cilium/ebpf"
)

// progTypeName renders enum bpf_prog_type the way bpftool does (lower case).
func progTypeName(t uint32) string {
	return strings.ToLower(ebpf.ProgramType(t).String())
}

// mapTypeName renders enum bpf_map_type the way bpftool does (lower case).
func mapTypeName(t uint32) string {
	return strings.ToLower(ebpf.MapType(t).String())
}
