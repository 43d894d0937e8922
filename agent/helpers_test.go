package agent_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/testutil/progwatch"
	"github.com/bpfattest/bpfattest/measure"
)

// requireKernel skips (fails under strict mode) unless the test can use bpf().
func requireKernel(tb testing.TB) {
	tb.Helper()
	testutil.RequireRoot(tb)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testutil.SkipEnv(tb, "kernel without BTF: %v", err)
	}
}

// header returns a fixture header's bytes.
func header(tb testing.TB, name string, signed bool) []byte {
	tb.Helper()
	file := "headers/" + name + ".lskel.h"
	if signed {
		file = "headers/" + name + ".signed.lskel.h"
	}
	b, err := os.ReadFile(testutil.LskelFile(tb, file))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// trustCert is the fixtures' TEST-ONLY signing certificate.
func trustCert(tb testing.TB) string {
	return testutil.LskelFile(tb, "keys/TEST_ONLY_signing_cert.der")
}

// config is a Config for tests: the simulator, a fresh state directory,
// the fixtures' signer trusted, no periodic sweep.
func config(tb testing.TB) agent.Config {
	return agent.Config{
		TPM:              "sim",
		StateDir:         tb.TempDir(),
		Trust:            []string{trustCert(tb)},
		ObserverInterval: -1,
	}
}

// newAgent starts an agent and closes it at cleanup.
func newAgent(tb testing.TB, cfg agent.Config) *agent.Agent {
	tb.Helper()
	requireKernel(tb)
	a, err := agent.New(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("agent.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := a.Close(); err != nil && !errors.Is(err, agent.ErrClosed) {
			tb.Errorf("close agent: %v", err)
		}
	})
	return a
}

// record returns record n of the agent's log.
func record(tb testing.TB, a *agent.Agent, n uint64) cel.Record {
	tb.Helper()
	recs, err := a.Records(n)
	if err != nil || len(recs) == 0 {
		tb.Fatalf("record %d: %v (%d records)", n, err, len(recs))
	}
	// Event n: the record itself, or its event in a batch record.
	evs, err := recs[0].Events()
	if err != nil {
		tb.Fatal(err)
	}
	for _, ev := range evs {
		if ev.RecNum == n && recs[0].Type != cel.Batch {
			return recs[0]
		}
		if ev.RecNum == n {
			return cel.Record{RecNum: n, PCR: recs[0].PCR, Type: ev.Type, Content: ev.Content}
		}
	}
	tb.Fatalf("record %d: the log has no event %d", n, n)
	return cel.Record{}
}

// measurementOf parses the measurement record n.
func measurementOf(tb testing.TB, a *agent.Agent, n uint64) *measure.Measurement {
	tb.Helper()
	r := record(tb, a, n)
	if r.Type != cel.BPFMeasurement {
		tb.Fatalf("record %d is %v, want %v", n, r.Type, cel.BPFMeasurement)
	}
	m, err := measure.ParseMeasurement(r.Content)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// resultOf parses the load-result record n.
func resultOf(tb testing.TB, a *agent.Agent, n uint64) *measure.LoadResult {
	tb.Helper()
	r := record(tb, a, n)
	if r.Type != cel.BPFLoadResult {
		tb.Fatalf("record %d is %v, want %v", n, r.Type, cel.BPFLoadResult)
	}
	res, err := measure.ParseLoadResult(r.Content)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// nextAfter returns the number the record after recs gets: the last
// record's number plus its events (a batch record carries several), or
// from when recs is empty.
func nextAfter(tb testing.TB, recs []cel.Record, from uint64) uint64 {
	tb.Helper()
	if len(recs) == 0 {
		return from
	}
	n, err := recs[len(recs)-1].NextRecNum()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// ofType returns the records of type t.
func ofType(recs []cel.Record, t cel.ContentType) []cel.Record {
	var out []cel.Record
	for i := range recs {
		// Events, not records: a batch record's events one by one, each
		// as the record it stands for (number, type, content; no digests).
		_ = recs[i].EachEvent(func(ev *cel.Event) error {
			if ev.Type == t {
				if recs[i].Type == t {
					out = append(out, recs[i])
				} else {
					out = append(out, cel.Record{RecNum: ev.RecNum, PCR: recs[i].PCR, Type: ev.Type, Content: ev.Content})
				}
			}
			return nil
		})
	}
	return out
}

// nonce returns a distinct 32-byte nonce.
func nonce(i int) []byte {
	n := sha256.Sum256([]byte{byte(i), byte(i >> 8), 'n'})
	return n[:]
}

// checkEvidence checks what a verifier would, short of the signature: the
// log slice decodes, the full log (the agent's records before FromRecord,
// then the slice) replays from the boot header's starting values to the PCR
// values in the evidence, and the quote's PCR digest covers those values.
// It returns the decoded slice and the quote's extra data.
func checkEvidence(tb testing.TB, a *agent.Agent, ev *evidence.Evidence) ([]cel.Record, []byte) {
	tb.Helper()
	slice, err := cel.Decode(ev.Log)
	if err != nil {
		tb.Fatalf("decode evidence log: %v", err)
	}
	if len(slice) > 0 && slice[0].RecNum != ev.FromRecord {
		tb.Fatalf("slice starts at record %d, want %d", slice[0].RecNum, ev.FromRecord)
	}
	head, err := a.Records(0)
	if err != nil {
		tb.Fatal(err)
	}
	full := append(slices.Clone(head[:ev.FromRecord]), slice...)
	boot, err := cel.ParseBootInfo(full[0].Content)
	if err != nil {
		tb.Fatalf("boot header: %v", err)
	}
	got, err := replay(full, boot.Start)
	if err != nil {
		tb.Fatalf("replay: %v", err)
	}
	// Per bank, the agent's PCR and the boot PCRs, ascending.
	want := slices.Sorted(slices.Values(append(a.Status().BootPCRs, ev.PCR)))
	pcrs := map[crypto.Hash][]byte{}
	indices := map[crypto.Hash][]int{}
	var concat []byte
	for _, v := range ev.PCRs {
		indices[v.Bank] = append(indices[v.Bank], v.Index)
		if v.Index == ev.PCR {
			pcrs[v.Bank] = v.Digest
		}
		concat = append(concat, v.Digest...)
	}
	for h, idx := range indices {
		if !slices.Equal(idx, want) {
			tb.Errorf("evidence %v pcrs %v, want %v", h, idx, want)
		}
	}
	// The quote covers every replayed bank except SHA-1, which the agent
	// extends but does not quote when a stronger bank is active.
	quotable := len(got)
	if _, ok := got[crypto.SHA1]; ok && len(got) > 1 {
		quotable--
	}
	if _, sha1 := pcrs[crypto.SHA1]; (sha1 && len(got) > 1) || len(pcrs) != quotable {
		tb.Errorf("evidence has %d banks (sha1 %v), replay %d", len(pcrs), sha1, len(got))
	}
	for h, want := range got {
		if h == crypto.SHA1 {
			continue
		}
		if !bytes.Equal(pcrs[h], want) {
			tb.Errorf("bank %v: quoted pcr %x, replay %x", h, pcrs[h], want)
		}
	}
	at, err := tpm2.Unmarshal[tpm2.TPMSAttest](ev.Attest)
	if err != nil {
		tb.Fatalf("attest: %v", err)
	}
	qi, err := at.Attested.Quote()
	if err != nil {
		tb.Fatalf("attest is not a quote: %v", err)
	}
	d := sha256.Sum256(concat) // the AK's name algorithm is SHA-256
	if !bytes.Equal(qi.PCRDigest.Buffer, d[:]) {
		tb.Errorf("quote pcr digest %x, want H(pcr values) %x", qi.PCRDigest.Buffer, d)
	}
	return slice, at.ExtraData.Buffer
}

// socketFilter loads "r0 = 0; exit" behind the agent's back.
func socketFilter(tb testing.TB) (*ebpf.Program, uint32) {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "behind_back",
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		tb.Fatal(err)
	}
	info, err := p.Info()
	if err != nil {
		tb.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		tb.Fatal("no program id")
	}
	return p, uint32(id)
}

// loadsDuring counts the programs this process loaded while fn ran, from
// the kernel's program events: the kernel is shared, and other processes
// load programs at any time.
func loadsDuring(tb testing.TB, fn func()) uint32 {
	tb.Helper()
	w := progwatch.Start(tb)
	w.Sync(tb)
	w.Reset()
	fn()
	w.Sync(tb)
	return uint32(len(w.LoadedBy(os.Getpid())))
}

// exists reports whether program id is in the kernel.
func exists(tb testing.TB, id uint32) bool {
	tb.Helper()
	_, err := bpfsys.ProgramInfoByID(id)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		tb.Fatal(err)
	}
	return true
}

func runtimeGosched() { runtime.Gosched() }

// replay folds recs into start with a cel.Replayer.
func replay(recs []cel.Record, start map[crypto.Hash][]byte) (map[crypto.Hash][]byte, error) {
	rp, err := cel.NewReplayer(start)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if err := rp.Add(&recs[i]); err != nil {
			return nil, err
		}
	}
	return rp.Values(), nil
}

// readLog reads and checks one boot's log file.
func readLog(path string) (*journal.Log, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return journal.Parse(path, b)
}
