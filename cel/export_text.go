package cel

import (
	"bufio"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// TextRenderer returns the fields of a BPF record's content for the text
// view ("name=value" pairs separated by spaces), or "" to print only the
// content length.
type TextRenderer func(t ContentType, content []byte) string

// WriteText writes recs one line per record, in the spirit of IMA's
// ascii_runtime_measurements:
//
//	<pcr> <sha256 digest> <content type> recnum=<n> <fields…>
//
// The digest column is the record's SHA-256 digest; a record without a
// SHA-256 digest shows its first digest as "<bank>:<hex>". A batch record's
// line ends with events=<k> and is followed by one line per event:
//
//	<pcr> - <content type> recnum=<n> batch=<batch recnum> <fields…>
//
// Management
// records show their decoded fields; BPF records show render's fields, or
// "len=<n>" when render is nil or returns "".
func WriteText(w io.Writer, recs []Record, render TextRenderer) error {
	bw := bufio.NewWriter(w)
	for i := range recs {
		r := &recs[i]
		fmt.Fprintf(bw, "%d %s %s recnum=%d", r.PCR, textDigest(r), r.Type, r.RecNum)
		if r.Type == Batch {
			writeBatchText(bw, r, render)
			continue
		}
		if f := textFields(r, render); f != "" {
			bw.WriteByte(' ')
			bw.WriteString(oneLine(f))
		}
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cel: write text: %w", err)
	}
	return nil
}

// writeBatchText ends a batch record's line with its number of events and
// writes one line per event: the PCR, "-" for the digest (an event has
// none of its own; the batch record's covers it), the event's type, its
// number, the batch's, and its fields.
func writeBatchText(bw *bufio.Writer, r *Record, render TextRenderer) {
	evs, err := r.Events()
	if err != nil {
		fmt.Fprintf(bw, " error=%s\n", strconv.Quote(err.Error()))
		return
	}
	fmt.Fprintf(bw, " events=%d\n", len(evs))
	for i := range evs {
		ev := &evs[i]
		fmt.Fprintf(bw, "%d - %s recnum=%d batch=%d", r.PCR, ev.Type, ev.RecNum, r.RecNum)
		if f := textFields(&Record{Type: ev.Type, Content: ev.Content}, render); f != "" {
			bw.WriteByte(' ')
			bw.WriteString(oneLine(f))
		}
		bw.WriteByte('\n')
	}
}

func textDigest(r *Record) string {
	if d, ok := r.Digest(crypto.SHA256); ok {
		return hex.EncodeToString(d)
	}
	if len(r.Digests) == 0 {
		return "-"
	}
	return BankName(r.Digests[0].Hash) + ":" + hex.EncodeToString(r.Digests[0].Value)
}

func textFields(r *Record, render TextRenderer) string {
	switch r.Type {
	case BootHeader:
		b, err := ParseBootInfo(r.Content)
		if err != nil {
			return "error=" + strconv.Quote(err.Error())
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "boot_id=%s reset_count=%d restart_count=%d clock=%d pcr=%d",
			textString(b.BootID), b.ResetCount, b.RestartCount, b.Clock, b.PCR)
		for _, d := range jsonValues(b.Start) {
			fmt.Fprintf(&sb, " start.%s=%s", d.HashAlg, d.Digest)
		}
		if k := b.Kernel; k != nil {
			fmt.Fprintf(&sb, " kernel.release=%s kernel.lockdown=%s", textString(k.Release), textString(k.Lockdown))
			for _, s := range k.sysctls() {
				fmt.Fprintf(&sb, " kernel.%s=%s", s.name, s.v)
			}
		}
		return sb.String()
	case AgentStart:
		a, err := ParseAgentStartInfo(r.Content)
		if err != nil {
			return "error=" + strconv.Quote(err.Error())
		}
		s := fmt.Sprintf("version=%s pid=%d clock=%d reset_count=%d restart_count=%d safe=%t",
			textString(a.Version), a.PID, a.Clock, a.ResetCount, a.RestartCount, a.Safe)
		if a.NoKernel {
			s += " no_kernel=true"
		}
		if a.Observer != "" {
			s += " observer=" + a.Observer
		}
		if a.TPM != "" {
			s += " tpm=" + a.TPM
		}
		return s
	case Recovery:
		ri, err := ParseRecoveryInfo(r.Content)
		if err != nil {
			return "error=" + strconv.Quote(err.Error())
		}
		return fmt.Sprintf("action=%s record=%d offset=%d length=%d sha256=%x detail=%s",
			ri.Action, ri.RecNum, ri.Offset, ri.Length, ri.SHA256, strconv.Quote(ri.Detail))
	}
	if render != nil {
		if f := render(r.Type, r.Content); f != "" {
			return f
		}
	}
	return fmt.Sprintf("len=%d", len(r.Content))
}

// textString quotes s unless it is a plain token.
func textString(s string) string {
	if s == "" {
		return `""`
	}
	for _, c := range s {
		if c <= ' ' || c > '~' || c == '"' || c == '=' || c == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}

// oneLine keeps a rendered field list on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}
