package main

import (
	"crypto"
	"strings"

	"github.com/bpfattest/bpfattest/cel"
)

// bankNames renders PCR banks by their TCG names.
func bankNames(banks []crypto.Hash) string {
	var out []string
	for _, b := range banks {
		out = append(out, cel.BankName(b))
	}
	return strings.Join(out, ",")
}
