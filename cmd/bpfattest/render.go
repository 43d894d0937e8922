package main

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
)

// recordText renders the content of a BPF record for the IMA-like text
// view: one line of key=value fields an auditor can grep and diff.
func recordText(t cel.ContentType, content []byte) string {
	switch t {
	case cel.BPFMeasurement:
		m, err := measure.ParseMeasurement(content)
		if err != nil {
			return parseError(content, err)
		}
		return measurementFields(m)
	case cel.BPFLoadResult:
		r, err := measure.ParseLoadResult(content)
		if err != nil {
			return parseError(content, err)
		}
		return loadResultFields(r)
	case cel.BPFUnmeasured:
		p, err := measure.ParseKernelProgram(content)
		if err != nil {
			return parseError(content, err)
		}
		return kernelProgramFields(p)
	case cel.BPFUnloaded:
		u, err := measure.ParseUnloaded(content)
		if err != nil {
			return parseError(content, err)
		}
		return fmt.Sprintf("prog_id=%d name=%q tag=%x introduced_by=%d", u.ID, u.Name, u.Tag, u.Record)
	case cel.BPFTransient:
		tr, err := measure.ParseTransient(content)
		if err != nil {
			return parseError(content, err)
		}
		return transientFields(tr)
	case cel.BPFEventsLost:
		e, err := measure.ParseEventsLost(content)
		if err != nil {
			return parseError(content, err)
		}
		return fmt.Sprintf("lost_events>=%d boot_time_ns=%d (a sweep of the kernel's programs follows)", e.Count, e.TimeNS)
	case cel.BPFRefusals:
		r, err := measure.ParseRefusals(content)
		if err != nil {
			return parseError(content, err)
		}
		return refusalsFields(r)
	}
	return ""
}

// refusalsFields renders the load requests counted without a record each:
// the totals, then one requester=UID:GID field per requester with its
// refused count (by verdict) and throttled count, and when.
func refusalsFields(r *measure.Refusals) string {
	refused, throttled := r.Total()
	var b strings.Builder
	fmt.Fprintf(&b, "refused=%d throttled=%d", refused, throttled)
	for _, c := range r.Requesters {
		fmt.Fprintf(&b, " requester=%d:%d", c.UID, c.GID)
		if c.Refused > 0 {
			fmt.Fprintf(&b, ":refused=%d", c.Refused)
			for _, v := range c.Verdicts {
				fmt.Fprintf(&b, ":%s=%d", v.Verdict, v.Count)
			}
		}
		if c.Throttled > 0 {
			fmt.Fprintf(&b, ":throttled=%d", c.Throttled)
		}
		fmt.Fprintf(&b, ":boot_time_ns=%d-%d", c.FirstNS, c.LastNS)
	}
	return b.String()
}

// transientFields renders the programs that came and went: one
// prog=ID:TAG[:pid=N[:exe]] field each.
func transientFields(t *measure.Transient) string {
	var b strings.Builder
	fmt.Fprintf(&b, "transient_programs=%d", len(t.Programs))
	for _, p := range t.Programs {
		fmt.Fprintf(&b, " prog=%d:%x", p.ID, p.Tag)
		if p.PID != 0 {
			fmt.Fprintf(&b, ":pid=%d", p.PID)
			switch {
			case p.Exe != "":
				fmt.Fprintf(&b, ":%s", p.Exe)
			case p.Comm != "":
				fmt.Fprintf(&b, ":%s", p.Comm)
			}
		}
		if p.Released {
			b.WriteString(":seen-released")
		}
	}
	return b.String()
}

// kernelProgramFields renders an unmeasured program: what the kernel said
// of it, how the agent found it, and who loaded it where an event said.
func kernelProgramFields(p *measure.KernelProgram) string {
	var b strings.Builder
	fmt.Fprintf(&b, "prog_id=%d type=%s name=%q tag=%x uid=%d discovery=%s",
		p.ID, lskel.ProgTypeName(p.Type), p.Name, p.Tag, p.CreatedByUID, p.Discovery)
	if p.PID != 0 {
		fmt.Fprintf(&b, " loader_pid=%d", p.PID)
	}
	if p.Comm != "" {
		fmt.Fprintf(&b, " comm=%q", p.Comm)
	}
	if p.Exe != "" {
		fmt.Fprintf(&b, " exe=%q", p.Exe)
	}
	if p.Discovery == measure.DiscoveredContradiction {
		fmt.Fprintf(&b, " contradicts=%d", p.Contradicts)
	}
	fmt.Fprintf(&b, " xlated_sha256=%s", hexOrDash(p.XlatedSHA256))
	return b.String()
}

func parseError(content []byte, err error) string {
	return fmt.Sprintf("len=%d parse_error=%q", len(content), err.Error())
}

func hexOrDash(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

func measurementFields(m *measure.Measurement) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name=%q scheme=%s verdict=%s kernel_check=%s loader_sha256=%x data_sha256=%x excl=%s data_link=%s",
		m.Name, m.Scheme, m.Verdict, m.KernelCheck, m.LoaderSHA256, m.DataSHA256, m.ExclLink, m.DataLink)
	if s := m.Signer; s != nil {
		if len(s.CertSHA256) > 0 {
			fmt.Fprintf(&b, " signer_cert_sha256=%x", s.CertSHA256)
		}
		if s.Subject != "" {
			fmt.Fprintf(&b, " signer=%q", s.Subject)
		}
		if s.ID != "" {
			fmt.Fprintf(&b, " signer_id=%s", s.ID)
		}
	}
	for _, p := range m.Programs {
		fmt.Fprintf(&b, " prog=%s:%s:%x", p.Name, lskel.ProgTypeName(p.Type), p.Digest)
		if p.TagKnown() {
			fmt.Fprintf(&b, ":tag=%x", p.KernelTag)
		}
	}
	if r := m.Requester; r != nil {
		fmt.Fprintf(&b, " uid=%d pid=%d", r.UID, r.PID)
		if r.Exe != "" {
			fmt.Fprintf(&b, " exe=%q", r.Exe)
		}
	}
	return b.String()
}

func loadResultFields(r *measure.LoadResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "measurement=%d outcome=%s", r.MeasurementRecord, r.Outcome)
	if r.Step != "" {
		fmt.Fprintf(&b, " step=%s", r.Step)
	}
	if r.Errno != 0 {
		fmt.Fprintf(&b, " errno=%d", r.Errno)
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, " reason=%q", r.Reason)
	}
	if l := r.Loader; l != nil {
		fmt.Fprintf(&b, " loader_id=%d loader_tag=%x", l.ID, l.Tag)
	}
	for _, p := range r.Programs {
		fmt.Fprintf(&b, " prog=%s:%d:%x", p.Name, p.ID, p.Tag)
	}
	for _, m := range r.Maps {
		fmt.Fprintf(&b, " map=%s:%d", m.Name, m.ID)
	}
	return b.String()
}
