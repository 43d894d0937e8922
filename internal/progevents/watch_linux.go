package progevents

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("program event watcher closed")

// bpfEventBit is the bpf_event bit of perf_event_attr's flags word; x/sys
// names the bits up to write_backward only.
const bpfEventBit = 1 << 30

// Offsets in struct perf_event_mmap_page of data_head and data_tail.
const (
	offDataHead = 1024
	offDataTail = 1032
)

// fullMargin: a ring with less free room than this cannot take another
// program event (48 bytes) and a lost-records report (40 bytes).
const fullMargin = 128

// DefaultRingPages is the data area of each CPU's ring, in pages: 64 pages
// of 4 KiB hold about 5,000 program events (48 bytes each) between two
// reads.
const DefaultRingPages = 64

// Options configure Open.
type Options struct {
	// RingPages is each CPU's data area in pages, a power of two; 0 means
	// DefaultRingPages.
	RingPages int
}

// Watcher reads the program events of every online CPU. Read and Wait are
// meant for one goroutine; Poll and Close may be called from any.
type Watcher struct {
	mu      sync.Mutex     // held while draining; Close takes it to unmap
	waiters sync.WaitGroup // Wait calls in progress; Close waits for them
	rings   []*ring
	epfd    int
	wake    int // eventfd: Close and context cancellation wake Read
	closed  atomic.Bool
	scratch []byte
}

type ring struct {
	cpu  int
	fd   int
	mem  []byte // the mapping: one metadata page, then the data area
	data []byte
}

// Open starts watching. It fails if perf events cannot be opened (no
// CAP_PERFMON/CAP_SYS_ADMIN, perf_event_paranoid, or a kernel without
// bpf_event) with the errno wrapped.
func Open(opts Options) (_ *Watcher, err error) {
	pages := opts.RingPages
	if pages == 0 {
		pages = DefaultRingPages
	}
	if pages < 1 || pages&(pages-1) != 0 || pages > 1<<16 {
		return nil, fmt.Errorf("progevents/open: %d ring pages: want a power of two up to 65536", pages)
	}
	cpus, err := onlineCPUs()
	if err != nil {
		return nil, fmt.Errorf("progevents/open: %w", err)
	}
	w := &Watcher{epfd: -1, wake: -1}
	defer func() {
		if err != nil {
			w.release()
		}
	}()
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("progevents/open: epoll: %w", err)
	}
	if w.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("progevents/open: eventfd: %w", err)
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(w.wake)}); err != nil {
		return nil, fmt.Errorf("progevents/open: epoll add: %w", err)
	}
	pageSize := os.Getpagesize()
	for _, cpu := range cpus {
		r, err := openRing(cpu, pageSize, pages)
		if err != nil {
			return nil, fmt.Errorf("progevents/open: cpu %d: %w", cpu, err)
		}
		w.rings = append(w.rings, r)
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, r.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.fd)}); err != nil {
			return nil, fmt.Errorf("progevents/open: epoll add cpu %d: %w", cpu, err)
		}
	}
	return w, nil
}

func openRing(cpu, pageSize, pages int) (*ring, error) {
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_SOFTWARE,
		Config:      unix.PERF_COUNT_SW_DUMMY,
		Size:        uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample_type: sampleType,
		Bits:        unix.PerfBitSampleIDAll | unix.PerfBitUseClockID | unix.PerfBitWatermark | bpfEventBit,
		// Wake the reader as soon as one byte is written: program
		// events are rare, and the reader wants each one at once.
		Wakeup:  1,
		Clockid: unix.CLOCK_BOOTTIME,
	}
	fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("perf_event_open: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, (1+pages)*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return &ring{cpu: cpu, fd: fd, mem: mem, data: mem[pageSize:]}, nil
}

// onlineCPUs parses /sys/devices/system/cpu/online ("0-3,5").
func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

// Read returns the events written since the last Read or Poll, waiting
// until there is at least one event or a lost-records count, ctx is done
// (its error), or the watcher is closed (ErrClosed).
func (w *Watcher) Read(ctx context.Context) (Batch, error) {
	for {
		b, err := w.Poll()
		if err != nil || len(b.Events) > 0 || b.Lost > 0 {
			return b, err
		}
		if err := w.Wait(ctx); err != nil {
			return Batch{}, err
		}
	}
}

// Wait blocks until some ring holds unread records, ctx is done (its
// error), or the watcher is closed (ErrClosed). It reads nothing: the
// caller drains with Poll, which may run meanwhile from another goroutine
// (so a caller can Wait outside its own lock and Poll inside it). Wait and
// Read are for one goroutine at a time.
func (w *Watcher) Wait(ctx context.Context) error {
	w.mu.Lock()
	if w.closed.Load() {
		w.mu.Unlock()
		return ErrClosed
	}
	w.waiters.Add(1)
	defer w.waiters.Done()
	pending := w.pendingLocked()
	w.mu.Unlock()
	if pending {
		return nil
	}
	// Close waits for this Wait (waiters) before it closes w.wake: a
	// signal that ctx's end started must be over by then, so wait for it
	// when stop comes too late to prevent it.
	signalled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(signalled)
		w.signal()
	})
	defer func() {
		if !stop() {
			<-signalled
		}
	}()
	events := make([]unix.EpollEvent, len(w.rings)+1)
	for {
		if w.closed.Load() {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("progevents/wait: epoll: %w", err)
		}
		woken, data := false, false
		for _, e := range events[:max(n, 0)] {
			if int(e.Fd) == w.wake {
				woken = true
			} else {
				data = true
			}
		}
		if w.closed.Load() {
			return ErrClosed
		}
		if woken {
			var buf [8]byte
			unix.Read(w.wake, buf[:]) // reset the eventfd
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if data {
			return nil
		}
	}
}

// pendingLocked reports whether a ring holds unread records.
func (w *Watcher) pendingLocked() bool {
	for _, r := range w.rings {
		head := atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.mem[offDataHead])))
		tail := atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.mem[offDataTail])))
		if head != tail {
			return true
		}
	}
	return false
}

// Poll returns the events written so far without waiting.
func (w *Watcher) Poll() (Batch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return Batch{}, ErrClosed
	}
	return w.drainLocked(), nil
}

func (w *Watcher) signal() {
	one := [8]byte{1}
	unix.Write(w.wake, one[:])
}

// drainLocked empties every ring, in time order.
func (w *Watcher) drainLocked() Batch {
	var b Batch
	for _, r := range w.rings {
		head := atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.mem[offDataHead])))
		tailp := (*uint64)(unsafe.Pointer(&r.mem[offDataTail]))
		tail := atomic.LoadUint64(tailp)
		if head-tail > uint64(len(r.data))-fullMargin {
			// The kernel reports what it dropped with PERF_RECORD_LOST,
			// but only once it can write again: a ring found full may
			// already have dropped records that nothing will report
			// until the next program event. Say so now.
			b.Lost++
		}
		var err error
		tail, w.scratch, err = drain(r.data, tail, head, w.scratch, func(rec []byte) {
			p, err := parseRecord(rec)
			switch {
			case err != nil:
				b.Lost++
			case p.event != nil:
				b.Events = append(b.Events, *p.event)
			default:
				b.Lost += p.lost
			}
		})
		if err != nil {
			// The ring cannot be read further: skip what is left and
			// count it as at least one lost record.
			tail = head
			b.Lost++
		}
		atomic.StoreUint64(tailp, tail)
	}
	slices.SortStableFunc(b.Events, func(x, y Event) int {
		return cmp.Or(cmp.Compare(x.Time, y.Time), cmp.Compare(x.CPU, y.CPU))
	})
	return b
}

// Close stops watching; a Read in progress returns ErrClosed.
func (w *Watcher) Close() error {
	if w.closed.Swap(true) {
		return ErrClosed
	}
	w.signal()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiters.Wait()
	return w.release()
}

func (w *Watcher) release() error {
	var errs []error
	for _, r := range w.rings {
		errs = append(errs, unix.Munmap(r.mem), unix.Close(r.fd))
	}
	w.rings = nil
	for _, fd := range []int{w.epfd, w.wake} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	w.epfd, w.wake = -1, -1
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("progevents/close: %w", err)
	}
	return nil
}
