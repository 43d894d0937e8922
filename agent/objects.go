package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/measure"
)

// Ownership of what a measured load creates. The loader writes the
// descriptors of the maps and programs it created into its context; those
// descriptors are in this process's table and nothing else refers to the
// objects, so they live exactly as long as the agent keeps them. The agent
// keeps them until Close, unless the request asked for pins: once every
// object is pinned the pins keep them and the agent lets its descriptors go.
// The loader program and its data map are closed as soon as the loader has
// run, as libbpf does.

// The names Run gives the loader's objects (libbpf skel_internal.h).
const (
	loaderProgName = "__loader.prog"
	loaderMapName  = "__loader.map"
)

// heldObjects are the programs and maps of one measured load.
type heldObjects struct {
	progs []*ebpf.Program
	maps  []*ebpf.Map
	fds   []int
}

// Close releases the objects.
func (h *heldObjects) Close() error {
	if h == nil {
		return nil
	}
	var errs []error
	for _, p := range h.progs {
		errs = append(errs, p.Close())
	}
	for _, m := range h.maps {
		errs = append(errs, m.Close())
	}
	h.progs, h.maps, h.fds = nil, nil, nil
	return errors.Join(errs...)
}

// takeObjects takes ownership of the descriptors the loader wrote into its
// context and describes the objects behind them. The context is untrusted:
// a descriptor is taken only if it names a bpf object of the expected kind
// and is not already owned (by this load or an earlier one), so a loader
// that writes a stray number cannot make the agent close a descriptor it
// does not own. Slots left zero are skipped.
//
// On an error nothing of the load stays open: the objects taken are
// released, and so is every other descriptor the context names that the
// agent would have taken. The objects described until then come back with
// the error, for the result record.
func (a *Agent) takeObjects(ctxOut []byte, nrMaps, nrProgs int) (*heldObjects, []measure.KernelObject, []measure.KernelObject, error) {
	mapFDs, progFDs, err := bpfsys.ReadCtxFDs(ctxOut, nrMaps, nrProgs)
	if err != nil {
		return nil, nil, nil, err
	}
	// Which descriptors are the load's, decided before any is taken, so a
	// failure half-way knows what is left to release.
	seen := map[int]bool{}
	owned := func(fds []int, kind string) []int {
		var out []int
		for _, fd := range fds {
			if fd <= 0 || seen[fd] || a.heldFDs[fd] {
				continue
			}
			link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			if err != nil || link != "anon_inode:"+kind {
				a.log.Warn("loader context names a descriptor that is not its object", "fd", fd, "want", kind, "link", link)
				continue
			}
			seen[fd] = true
			out = append(out, fd)
		}
		return out
	}
	progFDs, mapFDs = owned(progFDs, "bpf-prog"), owned(mapFDs, "bpf-map")

	h := &heldObjects{}
	var progs, maps []measure.KernelObject
	taken := 0 // descriptors of progFDs then mapFDs that h owns
	fail := func(err error) (*heldObjects, []measure.KernelObject, []measure.KernelObject, error) {
		errs := []error{err, h.Close()}
		for _, fd := range append(progFDs, mapFDs...)[taken:] {
			if cerr := syscall.Close(fd); cerr != nil {
				errs = append(errs, fmt.Errorf("close fd %d: %w", fd, cerr))
			}
		}
		return nil, progs, maps, errors.Join(errs...)
	}
	for i, fd := range progFDs {
		if a.set.takeHook != nil {
			if err := a.set.takeHook("prog", i); err != nil {
				return fail(err)
			}
		}
		info, err := bpfsys.ProgramInfoByFD(fd)
		if err != nil {
			return fail(err)
		}
		p, err := ebpf.NewProgramFromFD(fd)
		taken++ // NewProgramFromFD owns fd now, or has closed it
		if err != nil {
			return fail(err)
		}
		h.progs = append(h.progs, p)
		h.fds = append(h.fds, fd)
		progs = append(progs, measure.KernelObject{ID: info.ID, Type: uint32(info.Type), Tag: info.Tag, Name: info.Name})
	}
	for i, fd := range mapFDs {
		if a.set.takeHook != nil {
			if err := a.set.takeHook("map", i); err != nil {
				return fail(err)
			}
		}
		m, err := ebpf.NewMapFromFD(fd)
		taken++ // NewMapFromFD owns fd now, or has closed it
		if err != nil {
			return fail(err)
		}
		h.maps = append(h.maps, m)
		h.fds = append(h.fds, fd)
		info, err := m.Info()
		if err != nil {
			return fail(err)
		}
		id, _ := info.ID()
		maps = append(maps, measure.KernelObject{ID: uint32(id), Type: uint32(info.Type), Name: info.Name})
	}
	return h, progs, maps, nil
}

// pin pins every object of h in dir, named after the kernel's object
// names ("." becomes "_": bpffs refuses dots; a clash or an empty name
// gives prog_<id> or map_<id>). On failure the pins made are removed.
func pin(h *heldObjects, progs, maps []measure.KernelObject, dir *bpfsys.PinDir) ([]string, error) {
	used := map[string]bool{}
	name := func(kind string, o measure.KernelObject) string {
		n := strings.ReplaceAll(o.Name, ".", "_")
		if n == "" || used[n] {
			n = kind + "_" + strconv.FormatUint(uint64(o.ID), 10)
		}
		used[n] = true
		return n
	}
	var names, paths []string
	fail := func(err error) ([]string, error) {
		for _, n := range names {
			err = errors.Join(err, dir.Remove(n))
		}
		return nil, err
	}
	add := func(fd int, n string) error {
		path, err := dir.Pin(fd, n)
		if err != nil {
			return err
		}
		names, paths = append(names, n), append(paths, path)
		return nil
	}
	for i, p := range h.progs {
		if err := add(p.FD(), name("prog", progs[i])); err != nil {
			return fail(err)
		}
	}
	for i, m := range h.maps {
		if err := add(m.FD(), name("map", maps[i])); err != nil {
			return fail(err)
		}
	}
	return paths, nil
}

// openPinDir opens a load's pin directory before anything is measured, so
// a directory that cannot work is refused before any record or bpf() call:
// it must be an absolute path to a directory on a bpf filesystem, and a
// requester other than root must own it (the agent pins with root's
// rights; it does not lend them to put pins where the requester could
// not). The pins are made relative to the opened directory, so renaming
// or replacing its path after the check changes nothing. A name already
// taken in it is found only by the pin itself. An empty dir is (nil, nil).
func openPinDir(dir string, requesterUID uint32) (*bpfsys.PinDir, error) {
	if dir == "" {
		return nil, nil
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%w: pin dir %q is not absolute", ErrInvalid, dir)
	}
	d, err := bpfsys.OpenPinDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if requesterUID != 0 && d.Owner() != requesterUID {
		return nil, errors.Join(fmt.Errorf("%w: pin dir %q belongs to uid %d, not to the requester (uid %d)", ErrInvalid, dir, d.Owner(), requesterUID), d.Close())
	}
	return d, nil
}
