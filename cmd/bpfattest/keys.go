package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// readSigner reads a private key file: PEM (PKCS#8, PKCS#1 or SEC 1) or DER
// (PKCS#8, PKCS#1 or SEC 1).
func readSigner(path string) (crypto.Signer, error) {
	b, err := boundedfile.ReadFile(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	ders := [][]byte{b}
	if blk, _ := pem.Decode(b); blk != nil {
		ders = [][]byte{blk.Bytes}
	}
	for _, der := range ders {
		if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
		}
		if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(der); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", path, errNoKey)
}

// readCert reads one certificate, PEM or DER.
func readCert(path string) (*x509.Certificate, error) {
	b, err := boundedfile.ReadFile(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %q, want CERTIFICATE", path, blk.Type)
		}
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var errExists = errors.New("output file exists (use --force to replace it)")
