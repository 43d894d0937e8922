package agent_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
)

// bpfFDs counts this process's descriptors of bpf programs and maps.
func bpfFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (link == "anon_inode:bpf-prog" || link == "anon_inode:bpf-map") {
			n++
		}
	}
	return n
}

// TestLoadTakeFails: the loader ran, and the agent fails to take one of
// the objects it created (here its second map). Every object of the load
// is released, none of its descriptors stays open in the agent, and the
// log still gets the load's result: the measurement is never left without
// one while the agent runs on.
func TestLoadTakeFails(t *testing.T) {
	cfg := config(t)
	errTake := errors.New("injected: cannot take the object")
	agent.SetTakeHook(&cfg, func(kind string, i int) error {
		if kind == "map" && i == 1 {
			return errTake
		}
		return nil
	})
	a := newAgent(t, cfg)
	before, records := bpfFDs(t), a.Status().Records
	resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: header(t, "counter", true)})
	if !errors.Is(err, errTake) {
		t.Fatalf("Load: %v, want the injected error", err)
	}
	if after := bpfFDs(t); after != before {
		t.Errorf("%d bpf descriptors open after the failed load, %d before", after, before)
	}
	if st := a.Status(); st.Loaded != 0 {
		t.Errorf("%d programs of the load kept", st.Loaded)
	}
	recs, rerr := a.Records(records)
	if rerr != nil {
		t.Fatal(rerr)
	}
	var results []*measure.LoadResult
	for _, r := range ofType(recs, cel.BPFLoadResult) {
		res, err := measure.ParseLoadResult(r.Content)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	if len(ofType(recs, cel.BPFMeasurement)) != 1 || len(results) != 1 {
		t.Fatalf("records after the load: %d measurements, %d results, want one of each", len(ofType(recs, cel.BPFMeasurement)), len(results))
	}
	res := results[0]
	if res.Outcome != measure.OutcomeAborted || !strings.Contains(res.Reason, errTake.Error()) || len(res.Programs) != 1 {
		t.Errorf("result %+v: want aborted, the reason, and the program the loader created", res)
	}
	if resp == nil || resp.ResultRecord == 0 {
		t.Errorf("response %+v: want the result record", resp)
	}
}
