package progevents

import (
	"encoding/binary"
	"fmt"
)

// drain hands every complete record between tail and head of a ring's data
// area to fn, in order, and returns the new tail. data is the data area,
// its length a power of two; tail and head are the free-running byte counts
// of perf_event_mmap_page (data_tail, data_head). A record that wraps
// around the end of the area is copied into scratch. An impossible record
// size is an error wrapping ErrMalformed; the caller then gives up the rest
// of the ring (head becomes the tail) and reports records as lost.
func drain(data []byte, tail, head uint64, scratch []byte, fn func([]byte)) (uint64, []byte, error) {
	size := uint64(len(data))
	if size == 0 || size&(size-1) != 0 {
		return tail, scratch, fmt.Errorf("%w: data area of %d bytes", ErrMalformed, size)
	}
	if head-tail > size {
		return tail, scratch, fmt.Errorf("%w: %d bytes pending in a %d-byte ring", ErrMalformed, head-tail, size)
	}
	mask := size - 1
	for tail < head {
		left := head - tail
		if left < headerSize {
			return tail, scratch, fmt.Errorf("%w: %d bytes left, shorter than a header", ErrMalformed, left)
		}
		var hdr [headerSize]byte
		for i := range hdr {
			hdr[i] = data[(tail+uint64(i))&mask]
		}
		n := uint64(binary.NativeEndian.Uint16(hdr[6:]))
		if n < headerSize || n > left {
			return tail, scratch, fmt.Errorf("%w: record of %d bytes with %d left", ErrMalformed, n, left)
		}
		start := tail & mask
		var rec []byte
		if start+n <= size {
			rec = data[start : start+n]
		} else {
			scratch = append(scratch[:0], data[start:]...)
			scratch = append(scratch, data[:n-(size-start)]...)
			rec = scratch
		}
		fn(rec)
		tail += n
	}
	return tail, scratch, nil
}
