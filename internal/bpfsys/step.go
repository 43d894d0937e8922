package bpfsys

import "fmt"

// Step is one step of Run, in the order Run performs them.
type Step uint8

// The steps of Run. NoStep is the zero value: no step (a successful Run, or a
// system call issued outside Run).
const (
	NoStep     Step = iota
	MapCreate       // BPF_MAP_CREATE of the data map
	MapUpdate       // BPF_MAP_UPDATE_ELEM: the data blob into element 0
	MapFreeze       // BPF_MAP_FREEZE
	MapInfo         // BPF_OBJ_GET_INFO_BY_FD on the map: the kernel's SHA-256 of it
	ProgLoad        // BPF_PROG_LOAD of the loader
	LoaderInfo      // BPF_OBJ_GET_INFO_BY_FD on the loader: its id and tag
	TestRun         // BPF_PROG_TEST_RUN: the loader creates the skeleton's objects
)

// Steps lists the steps of Run in order.
func Steps() []Step {
	return []Step{MapCreate, MapUpdate, MapFreeze, MapInfo, ProgLoad, LoaderInfo, TestRun}
}

func (s Step) String() string {
	switch s {
	case NoStep:
		return "none"
	case MapCreate:
		return "map-create"
	case MapUpdate:
		return "map-update"
	case MapFreeze:
		return "map-freeze"
	case MapInfo:
		return "map-info"
	case ProgLoad:
		return "prog-load"
	case LoaderInfo:
		return "loader-info"
	case TestRun:
		return "test-run"
	}
	return fmt.Sprintf("step(%d)", uint8(s))
}
