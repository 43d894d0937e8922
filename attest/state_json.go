package attest

import (
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/bpfattest/bpfattest/cel"
)

// stateJSON is the JSON form of a State: the same fields as the binary
// encoding, with banks and content types by name, digests in hex and
// record contents in base64.
type stateJSON struct {
	Version    int               `json:"version"`
	PCR        int               `json:"pcr"`
	BootID     string            `json:"boot_id"`
	Clock      clockJSON         `json:"clock"`
	NextRecord uint64            `json:"next_record"`
	Running    map[string]string `json:"running"`
	Records    []recordJSON      `json:"records"`
	Boot       *bootJSON         `json:"boot,omitempty"`
}

type clockJSON struct {
	Clock        uint64 `json:"clock"`
	ResetCount   uint32 `json:"reset_count"`
	RestartCount uint32 `json:"restart_count"`
	Safe         bool   `json:"safe"`
}

type recordJSON struct {
	RecNum  uint64 `json:"recnum"`
	Type    string `json:"content_type"`
	Content []byte `json:"content"`
}

// MarshalJSON returns the State as JSON, for storage that prefers text.
func (s *State) MarshalJSON() ([]byte, error) {
	if s == nil || s.inv == nil {
		return nil, fmt.Errorf("attest/state: %w: empty state", ErrState)
	}
	j := stateJSON{
		Version: stateVersion, PCR: s.pcr, BootID: s.bootID,
		Clock:      clockJSON{s.clock.Clock, s.clock.ResetCount, s.clock.RestartCount, s.clock.Safe},
		NextRecord: s.next,
		Running:    map[string]string{},
		Records:    []recordJSON{},
	}
	for h, v := range s.running {
		j.Running[cel.BankName(h)] = hex.EncodeToString(v)
	}
	for _, r := range s.inv.live.All() {
		j.Records = append(j.Records, recordJSON{RecNum: r.rn, Type: r.typ.String(), Content: r.content})
	}
	j.Boot = s.bootJSON()
	return json.Marshal(j)
}

// UnmarshalJSON decodes a State written by MarshalJSON, with the same
// checks as UnmarshalBinary.
func (s *State) UnmarshalJSON(b []byte) error {
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("attest/state: %w: %w", ErrState, err)
	}
	if j.Version != stateVersion {
		return fmt.Errorf("attest/state: %w: version %d, this reader knows %d", ErrState, j.Version, stateVersion)
	}
	d := stateData{pcr: j.PCR, bootID: j.BootID, next: j.NextRecord,
		clock:   cel.ClockInfo{Clock: j.Clock.Clock, ResetCount: j.Clock.ResetCount, RestartCount: j.Clock.RestartCount, Safe: j.Clock.Safe},
		running: map[crypto.Hash][]byte{}}
	for name, v := range j.Running {
		h, ok := bankByName(name)
		if !ok {
			return fmt.Errorf("attest/state: %w: bank %q", ErrState, name)
		}
		val, err := hex.DecodeString(v)
		if err != nil || len(val) != h.Size() {
			return fmt.Errorf("attest/state: %w: %s value %q", ErrState, name, v)
		}
		d.running[h] = val
	}
	for _, r := range j.Records {
		t, ok := contentTypeByName(r.Type)
		if !ok {
			return fmt.Errorf("attest/state: %w: record %d content type %q", ErrState, r.RecNum, r.Type)
		}
		d.records = append(d.records, numberedRecord{rn: r.RecNum, typ: t, content: r.Content})
	}
	var err error
	if d.boot, err = j.Boot.bootData(j.PCR); err != nil {
		return fmt.Errorf("attest/state: %w: %w", ErrState, err)
	}
	ns, err := d.state()
	if err != nil {
		return err
	}
	*s = *ns
	return nil
}

func bankByName(name string) (crypto.Hash, bool) {
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if cel.BankName(h) == name {
			return h, true
		}
	}
	return 0, false
}

func contentTypeByName(name string) (cel.ContentType, bool) {
	for _, t := range []cel.ContentType{cel.BPFMeasurement, cel.BPFLoadResult, cel.BPFUnmeasured,
		cel.BPFUnloaded, cel.AgentStart, cel.BootHeader, cel.Recovery} {
		if t.String() == name {
			return t, true
		}
	}
	return 0, false
}
