package main

import (
	"crypto"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/bpfattest/bpfattest/cel"
)

// progTypeName renders enum bpf_prog_type the way bpftool does (lower case).
func progTypeName(t uint32) string {
	return strings.ToLower(ebpf.ProgramType(t).String())
}

// mapTypeName renders enum bpf_map_type the way bpftool does (lower case).
func mapTypeName(t uint32) string {
	return strings.ToLower(ebpf.MapType(t).String())
}

// bankNames renders PCR banks by their TCG names.
func bankNames(banks []crypto.Hash) string {
	var out []string
	for _, b := range banks {
		out = append(out, cel.BankName(b))
	}
	return strings.Join(out, ",")
}
