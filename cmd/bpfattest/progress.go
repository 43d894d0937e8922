package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/bpfattest/bpfattest/verifier"
)

// progress reports a scan's progress on stderr: a bar redrawn in place
// when stderr is a terminal, one line per finished host otherwise (logs
// and CI keep every line).
type progress struct {
	w     io.Writer
	tty   bool
	total int

	mu   sync.Mutex // guards done
	done int
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, tty: isTerminal(w), total: total}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

const progressWidth = 40

// finishHost records one finished host.
func (p *progress) finishHost(v *verifier.Verdict) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if !p.tty {
		fmt.Fprintf(p.w, "scan: %d/%d %s %s\n", p.done, p.total, v.Host, v.Status)
		return
	}
	n := progressWidth * p.done / max(p.total, 1)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d hosts", strings.Repeat("=", n), strings.Repeat(" ", progressWidth-n), p.done, p.total)
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
