package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
	"github.com/bpfattest/bpfattest/measure/cms"
)

func runSign(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("sign", stderr,
		"usage: bpfattest sign --key K --cert C [--scheme kernel|hornet] --out BUNDLE FILE",
		"\nSigns the loader instructions of FILE (a .lskel.h header or a bundle) and writes a bundle.",
		"A signature FILE already carries is replaced.")
	keyPath := fs.String("key", "", "private key (PEM or DER; PKCS#8, PKCS#1 or SEC 1)")
	certPath := fs.String("cert", "", "the signer's certificate (PEM or DER)")
	scheme := fs.String("scheme", "kernel", "signature scheme: kernel (Linux 6.18) or hornet (map hashes as a signed attribute)")
	out := fs.String("out", "", "the bundle to write")
	embed := fs.Bool("embed-cert", false, "carry the certificate in the bundle (not in the signature)")
	force := fs.Bool("force", false, "replace --out if it exists")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 || *keyPath == "" || *certPath == "" || *out == "" {
		fs.Usage()
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "bpfattest sign: %v\n", err)
		return exitUsage
	}
	var opts cms.SignOptions
	switch *scheme {
	case "kernel":
		opts.Scheme = cms.SchemeKernel
	case "hornet":
		opts.Scheme = cms.SchemeHornet
	default:
		return fail(fmt.Errorf("--scheme %q: want kernel or hornet", *scheme))
	}
	src, err := boundedfile.ReadFile(fs.Arg(0), lskel.MaxHeaderSize)
	if err != nil {
		return fail(err)
	}
	art, err := lskel.Load(src)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fs.Arg(0), err))
	}
	key, err := readSigner(*keyPath)
	if err != nil {
		return fail(err)
	}
	cert, err := readCert(*certPath)
	if err != nil {
		return fail(err)
	}
	layout, err := lskel.Analyze(art.Insns, art.Data)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fs.Arg(0), err))
	}
	if opts.Scheme == cms.SchemeHornet {
		h := measure.MapHash(art.Data)
		opts.MapHashes = []cms.MapHash{{Index: 0, SHA256: h[:]}}
	}
	sig, err := cms.Sign(art.Insns, key, cert, opts)
	if err != nil {
		return fail(err)
	}
	excl := sha256.Sum256(art.Insns)
	art.Signature = sig
	art.ExclHash = excl[:]
	if *embed {
		art.Certs = [][]byte{cert.Raw}
	}
	bundle, err := art.MarshalBundle()
	if err != nil {
		return fail(err)
	}
	if err := writeOut(*out, bundle, *force); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "signed %s (%s scheme, signer %s) -> %s\n", art.Name, *scheme, cert.Subject, *out)
	if len(layout.EmbeddedDataHash) == 0 && opts.Scheme == cms.SchemeKernel {
		fmt.Fprintln(stderr, "warning: this loader embeds no data hash, so the kernel scheme's signature does not cover its data map or programs; sign the output of 'bpftool gen skeleton -S' or use --scheme hornet")
	}
	return exitOK
}

// writeOut writes a file atomically (temp file, fsync, rename) with mode 0644.
func writeOut(path string, data []byte, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w", path, errExists)
		}
	}
	tmp, err := os.CreateTemp(dirOf(path), ".bpfattest-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
