package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/lskel"
)

func runPack(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("pack", stderr,
		"usage: bpfattest pack [--keyring-id N] [--cert C]... --out BUNDLE HEADER.lskel.h")
	out := fs.String("out", "", "the bundle to write")
	keyring := fs.Int("keyring-id", 0, "keyring hint carried in the bundle (the skeleton's keyring_id; -3 = session keyring)")
	var certs multiFlag
	fs.Var(&certs, "cert", "signer certificate to carry in the bundle (PEM or DER; repeatable)")
	force := fs.Bool("force", false, "replace --out if it exists")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 || *out == "" {
		fs.Usage()
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "bpfattest pack: %v\n", err)
		return exitUsage
	}
	src, err := boundedfile.ReadFile(fs.Arg(0), lskel.MaxHeaderSize)
	if err != nil {
		return fail(err)
	}
	art, err := lskel.ParseHeader(src)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fs.Arg(0), err))
	}
	art.KeyringID = int32(*keyring)
	for _, c := range certs {
		cert, err := readCert(c)
		if err != nil {
			return fail(err)
		}
		art.Certs = append(art.Certs, cert.Raw)
	}
	b, err := art.MarshalBundle()
	if err != nil {
		return fail(err)
	}
	if err := writeOut(*out, b, *force); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "packed %s (%d loader insns, %d data bytes, signed: %v) -> %s\n",
		art.Name, len(art.Insns)/8, len(art.Data), len(art.Signature) > 0, *out)
	return exitOK
}

func dirOf(path string) string { return filepath.Dir(path) }
