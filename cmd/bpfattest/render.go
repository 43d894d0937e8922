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
		return fmt.Sprintf("prog_id=%d type=%s name=%q tag=%x uid=%d discovery=%s xlated_sha256=%s",
			p.ID, lskel.ProgTypeName(p.Type), p.Name, p.Tag, p.CreatedByUID, p.Discovery, hexOrDash(p.XlatedSHA256))
	case cel.BPFUnloaded:
		u, err := measure.ParseUnloaded(content)
		if err != nil {
			return parseError(content, err)
		}
		return fmt.Sprintf("prog_id=%d name=%q tag=%x introduced_by=%d", u.ID, u.Name, u.Tag, u.Record)
	}
	return ""
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
