package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// errTooLarge: an input file is larger than the limit for its kind.
var errTooLarge = errors.New("file too large")

// Limits of the files the CLI reads whose format has no limit of its own.
const (
	maxKeyFileSize = 1 << 20 // a PEM or DER key or certificate (bundle)
)

// readFileMax reads the file at path, refusing one larger than limit bytes
// after reading at most limit+1 of them, so a huge file, a FIFO or a
// character device cannot exhaust memory before the size check.
func readFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes: %w", path, limit, errTooLarge)
	}
	return b, nil
}
