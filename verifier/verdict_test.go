package verifier

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReport counts hosts by status and rounds the duration.
func TestReport(t *testing.T) {
	vs := []*Verdict{
		{Status: StatusCompliant}, {Status: StatusCompliant}, {Status: StatusNonCompliant},
		{Status: StatusUnreachable}, {Status: StatusUnverified},
	}
	r := NewReport(vs, 1234567*time.Microsecond)
	want := Summary{Hosts: 5, Compliant: 2, NonCompliant: 1, Unreachable: 1, Unverified: 1}
	if diff := cmp.Diff(want, r.Summary); diff != "" || r.Duration != "1.235s" {
		t.Errorf("summary (-want +got):\n%s\nduration %s", diff, r.Duration)
	}
}

// TestReasons lists the reason of a failure, else one line per violation.
func TestReasons(t *testing.T) {
	v := &Verdict{Status: StatusUnverified, Reason: "quote: Unavailable: gone"}
	if got := v.Reasons(); !cmp.Equal(got, []string{"quote: Unavailable: gone"}) {
		t.Errorf("failure: %q", got)
	}
	v = &Verdict{Status: StatusNonCompliant, Violations: []Violation{{Record: 4, Artifact: "counter_lskel", Rule: "require_signed", Reason: "UNSIGNED"}}}
	if got := v.Reasons(); !cmp.Equal(got, []string{"record 4 (counter_lskel): require_signed: UNSIGNED"}) {
		t.Errorf("violations: %q", got)
	}
}
