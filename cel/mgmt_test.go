package cel_test

import (
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bpfattest/bpfattest/cel"
)

func TestManagementRoundTrip(t *testing.T) {
	when := time.Date(2026, 7, 1, 12, 0, 0, 5, time.UTC)
	boot := cel.BootInfo{BootID: "id", ResetCount: 1, RestartCount: 2, Clock: 3, PCR: 14,
		Start: zeros([]crypto.Hash{crypto.SHA256, crypto.SHA384}), Time: when}
	b := mustMarshal(t, &boot)
	gotBoot, err := cel.ParseBootInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(boot, gotBoot); diff != "" {
		t.Errorf("boot info (-want +got):\n%s", diff)
	}

	start := cel.AgentStartInfo{Version: "v1 (dev)", PID: 1, ClockInfo: cel.ClockInfo{Clock: 9, ResetCount: 1, RestartCount: 2, Safe: true}}
	gotStart, err := cel.ParseAgentStartInfo(mustMarshal(t, &start))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(start, gotStart); diff != "" {
		t.Errorf("agent start (-want +got):\n%s", diff)
	}
	noKernel := start
	noKernel.NoKernel = true
	nk := mustMarshal(t, &noKernel)
	if got, err := cel.ParseAgentStartInfo(nk); err != nil || !got.NoKernel {
		t.Errorf("no-kernel agent start: %+v, %v", got, err)
	}
	if len(nk) != len(mustMarshal(t, &start))+6 {
		t.Errorf("no-kernel agent start is %d bytes: the flag is one field more", len(nk))
	}
	for _, v := range []cel.AgentStartInfo{
		{Version: "v", Observer: cel.ObserverEvents, TPM: cel.TPMDevice},
		{Version: "v", NoKernel: true, Observer: cel.ObserverNone, TPM: cel.TPMSimulator},
		{Version: "v", TPM: cel.TPMSwtpm},
		{Version: "v", Observer: cel.ObserverSweep},
	} {
		got, err := cel.ParseAgentStartInfo(mustMarshal(t, &v))
		if err != nil || got != v {
			t.Errorf("agent start %+v read back as %+v, %v", v, got, err)
		}
	}
	bad := cel.AgentStartInfo{Version: "v", Observer: "psychic"}
	if _, err := cel.ParseAgentStartInfo(mustMarshal(t, &bad)); !errors.Is(err, cel.ErrMalformed) {
		t.Errorf("unknown observer: %v", err)
	}

	rec := cel.RecoveryInfo{Action: cel.DiscardedTail, RecNum: 4, Offset: 5, Length: 6, SHA256: [32]byte{9}, Detail: "torn"}
	gotRec, err := cel.ParseRecoveryInfo(mustMarshal(t, &rec))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, gotRec); diff != "" {
		t.Errorf("recovery (-want +got):\n%s", diff)
	}
}

func TestManagementMarshalRejects(t *testing.T) {
	if _, err := (&cel.BootInfo{Start: zeros(allBanks)}).MarshalBinary(); err == nil {
		t.Error("boot info without boot id: no error")
	}
	if _, err := (&cel.BootInfo{BootID: "x"}).MarshalBinary(); err == nil {
		t.Error("boot info without start values: no error")
	}
	if _, err := (&cel.BootInfo{BootID: "x", Start: map[crypto.Hash][]byte{crypto.SHA256: {1}}}).MarshalBinary(); err == nil {
		t.Error("boot info with a short start value: no error")
	}
	if _, err := (&cel.RecoveryInfo{Action: 9}).MarshalBinary(); err == nil {
		t.Error("recovery with an unknown action: no error")
	}
}

func TestManagementParseStrict(t *testing.T) {
	start := cel.AgentStartInfo{Version: "v", PID: 1}
	good := mustMarshal(t, &start)
	tests := map[string][]byte{
		"empty":           nil,
		"trailing byte":   append(append([]byte(nil), good...), 0),
		"missing field":   good[:len(good)-6],
		"bad bool":        append(append([]byte(nil), good[:len(good)-1]...), 2),
		"no_kernel false": append(append([]byte(nil), good...), 8, 0, 0, 0, 1, 0),
		"unknown field":   append(append([]byte(nil), good...), 9, 0, 0, 0, 1, 1),
		"field too long":  append([]byte{1, 0, 0, 0, 200}, good[5:]...),
		"wrong first tag": append([]byte{2}, good[1:]...),
		"invalid utf8":    append([]byte{1, 0, 0, 0, 1, 0xff}, good[6:]...),
	}
	for name, b := range tests {
		_, err := cel.ParseAgentStartInfo(b)
		var fe *cel.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, cel.ErrMalformed) {
			t.Errorf("%s: err = %v, want a FieldError", name, err)
		}
	}
	boot := cel.BootInfo{BootID: "x", Start: zeros([]crypto.Hash{crypto.SHA1, crypto.SHA256})}
	bb := mustMarshal(t, &boot)
	bad := append([]byte(nil), bb...)
	bad[1+4] = 0 // format version high byte stays 0; make it 2
	bad[6] = 2
	if _, err := cel.ParseBootInfo(bad); err == nil {
		t.Error("boot info with format 2: no error")
	}
	if _, err := cel.ParseRecoveryInfo([]byte{1, 0, 0, 0, 1, 7}); err == nil {
		t.Error("recovery with action 7: no error")
	}
}
