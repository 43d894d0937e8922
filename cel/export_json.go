package cel

import (
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// JSONRenderer returns the decoded form of a BPF record's content for the
// CEL-JSON export, or nil to leave the content as bytes only. It must be
// deterministic (structs and maps are, under encoding/json).
type JSONRenderer func(t ContentType, content []byte) any

// WriteJSON writes recs as a CEL-JSON array, one record per line. The
// output is deterministic. Every record keeps its content bytes in hex
// ("data"), so the export is lossless and each digest can be recomputed from
// it; management records also carry their decoded fields, and BPF records
// carry render's result when render is not nil. A batch record's fields
// list its events ("events": recnum, content_type and content as for a
// record), each shown as the record it stands for would be.
func WriteJSON(w io.Writer, recs []Record, render JSONRenderer) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return fmt.Errorf("cel: write json: %w", err)
	}
	for i := range recs {
		b, err := json.Marshal(jsonRecordOf(&recs[i], render))
		if err != nil {
			return fmt.Errorf("cel: write json record %d: %w", i, err)
		}
		sep := ",\n"
		if i == 0 {
			sep = "\n"
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return fmt.Errorf("cel: write json: %w", err)
		}
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("cel: write json: %w", err)
		}
	}
	end := "]\n"
	if len(recs) > 0 {
		end = "\n]\n"
	}
	if _, err := io.WriteString(w, end); err != nil {
		return fmt.Errorf("cel: write json: %w", err)
	}
	return nil
}

// jsonRecord is the CEL-JSON record (TCG CEL specification, JSON encoding).
type jsonRecord struct {
	RecNum      uint64       `json:"recnum"`
	PCR         uint8        `json:"pcr"`
	Digests     []jsonDigest `json:"digests"`
	ContentType string       `json:"content_type"`
	Content     jsonContent  `json:"content"`
}

type jsonDigest struct {
	HashAlg string `json:"hashAlg"`
	Digest  string `json:"digest"`
}

type jsonContent struct {
	Kind   string `json:"kind"`
	Data   string `json:"data"`
	Fields any    `json:"fields,omitempty"`
	Error  string `json:"error,omitempty"`
}

func jsonRecordOf(r *Record, render JSONRenderer) jsonRecord {
	jr := jsonRecord{
		RecNum:      r.RecNum,
		PCR:         r.PCR,
		Digests:     make([]jsonDigest, len(r.Digests)),
		ContentType: r.Type.celName(),
		Content:     jsonContent{Kind: r.Type.String(), Data: hex.EncodeToString(r.Content)},
	}
	for i, d := range r.Digests {
		jr.Digests[i] = jsonDigest{HashAlg: BankName(d.Hash), Digest: hex.EncodeToString(d.Value)}
	}
	if r.Type == Batch {
		evs, err := r.Events()
		if err != nil {
			jr.Content.Error = err.Error()
			return jr
		}
		out := make([]jsonEvent, len(evs))
		for i := range evs {
			out[i] = jsonEventOf(&evs[i], render)
		}
		jr.Content.Fields = struct {
			Events []jsonEvent `json:"events"`
		}{out}
		return jr
	}
	jr.Content.Fields, jr.Content.Error = eventFields(r.Type, r.Content, render)
	return jr
}

// jsonEvent is one event of a batch record: its number, its content as a
// record's content would be shown, and its own content_type.
type jsonEvent struct {
	RecNum      uint64      `json:"recnum"`
	ContentType string      `json:"content_type"`
	Content     jsonContent `json:"content"`
}

func jsonEventOf(ev *Event, render JSONRenderer) jsonEvent {
	je := jsonEvent{RecNum: ev.RecNum, ContentType: ev.Type.celName(),
		Content: jsonContent{Kind: ev.Type.String(), Data: hex.EncodeToString(ev.Content)}}
	je.Content.Fields, je.Content.Error = eventFields(ev.Type, ev.Content, render)
	return je
}

// eventFields returns the decoded fields of one event's content, or why
// they could not be decoded.
func eventFields(t ContentType, content []byte, render JSONRenderer) (any, string) {
	if !t.Management() {
		if render != nil {
			return render(t, content), ""
		}
		return nil, ""
	}
	fields, err := managementFields(&Record{Type: t, Content: content})
	if err != nil {
		return nil, err.Error()
	}
	return fields, ""
}

func managementFields(r *Record) (any, error) {
	switch r.Type {
	case BootHeader:
		b, err := ParseBootInfo(r.Content)
		if err != nil {
			return nil, err
		}
		return struct {
			BootID       string       `json:"boot_id"`
			ResetCount   uint32       `json:"reset_count"`
			RestartCount uint32       `json:"restart_count"`
			Clock        uint64       `json:"clock"`
			PCR          uint8        `json:"pcr"`
			Start        []jsonDigest `json:"start"`
			Time         string       `json:"time"`
			Kernel       *jsonKernel  `json:"kernel,omitempty"`
		}{b.BootID, b.ResetCount, b.RestartCount, b.Clock, b.PCR, jsonValues(b.Start), jsonTime(b.Time), kernelJSON(b.Kernel)}, nil
	case AgentStart:
		a, err := ParseAgentStartInfo(r.Content)
		if err != nil {
			return nil, err
		}
		return struct {
			Version      string `json:"version"`
			PID          uint32 `json:"pid"`
			Time         string `json:"time"`
			Clock        uint64 `json:"clock"`
			ResetCount   uint32 `json:"reset_count"`
			RestartCount uint32 `json:"restart_count"`
			Safe         bool   `json:"safe"`
			NoKernel     bool   `json:"no_kernel,omitempty"`
			Observer     string `json:"observer,omitempty"`
			TPM          string `json:"tpm,omitempty"`
		}{a.Version, a.PID, jsonTime(a.Time), a.Clock, a.ResetCount, a.RestartCount, a.Safe, a.NoKernel, a.Observer, a.TPM}, nil
	case Recovery:
		ri, err := ParseRecoveryInfo(r.Content)
		if err != nil {
			return nil, err
		}
		return struct {
			Action string `json:"action"`
			RecNum uint64 `json:"recnum"`
			Offset uint64 `json:"offset"`
			Length uint64 `json:"length"`
			SHA256 string `json:"sha256"`
			Detail string `json:"detail"`
		}{ri.Action.String(), ri.RecNum, ri.Offset, ri.Length, hex.EncodeToString(ri.SHA256[:]), ri.Detail}, nil
	}
	return nil, fmt.Errorf("cel: no fields for %v", r.Type)
}

// jsonValues lists PCR values in canonical bank order.
func jsonValues(vals map[crypto.Hash][]byte) []jsonDigest {
	var out []jsonDigest
	for _, h := range canonicalBanks() {
		if v, ok := vals[h]; ok {
			out = append(out, jsonDigest{HashAlg: BankName(h), Digest: hex.EncodeToString(v)})
		}
	}
	return out
}

func jsonTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// jsonKernel is a boot header's KernelInfo; a sysctl not read is null.
type jsonKernel struct {
	Release                 string `json:"release"`
	Lockdown                string `json:"lockdown"`
	UnprivilegedBPFDisabled *int   `json:"unprivileged_bpf_disabled"`
	BPFJITEnable            *int   `json:"bpf_jit_enable"`
	BPFJITHarden            *int   `json:"bpf_jit_harden"`
	BPFJITKallsyms          *int   `json:"bpf_jit_kallsyms"`
}

func kernelJSON(k *KernelInfo) *jsonKernel {
	if k == nil {
		return nil
	}
	v := func(s Sysctl) *int {
		if !s.Known() {
			return nil
		}
		n := int(s)
		return &n
	}
	return &jsonKernel{k.Release, k.Lockdown, v(k.UnprivilegedBPFDisabled), v(k.BPFJITEnable), v(k.BPFJITHarden), v(k.BPFJITKallsyms)}
}
