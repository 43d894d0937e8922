// Package boundedfile reads files whose size the reader must bound before
// it trusts them: configuration, keys, certificates, logs handed over by an
// operator. A file is read up to one byte past its limit and refused if
// that byte exists, so a huge file, a FIFO or a character device named by
// mistake (or on purpose) cannot exhaust memory before the size is known.
package boundedfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is wrapped by ReadFile's error for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads the file at path, refusing one larger than limit bytes.
// Errors name the path.
func ReadFile(path string, limit int64) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("read %s: negative limit %d", path, limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError names the path
	}
	defer f.Close()
	// A regular file says its size: one over the limit is refused without
	// reading it, and one within it is read into a buffer of its size. The
	// size is only a hint (the file may grow while it is read); the limited
	// reader below is what bounds memory.
	hint := int64(512)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		if fi.Size() > limit {
			return nil, fmt.Errorf("%s: %d bytes, more than %d bytes: %w", path, fi.Size(), limit, ErrTooLarge)
		}
		hint = fi.Size() + 1
	}
	b := make([]byte, 0, hint)
	r := io.LimitReader(f, limit+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes: %w", path, limit, ErrTooLarge)
	}
	return b, nil
}
