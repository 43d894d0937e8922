package fleet

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// recorder is a Registerer that keeps the collectors registered with it.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.cs = append(r.cs, cs...)
}
func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// TestAlertRulesNameRealMetrics: every bpfattest_fleet_ metric the alert
// rules use is one the service exports (a renamed metric would leave an
// alert that can never fire, which promtool does not see).
func TestAlertRulesNameRealMetrics(t *testing.T) {
	var r recorder
	if _, err := newMetrics(&r); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range r.cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	fqName := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	var exported []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			exported = append(exported, m[1])
		}
	}
	rules, err := os.ReadFile("../deploy/prometheus/bpfattest-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`bpfattest_fleet_[a-z_]+`).FindAllString(string(rules), -1)
	if len(used) < 6 {
		t.Fatalf("the alert rules use %d fleet metrics: %v", len(used), used)
	}
	histogram := regexp.MustCompile(`_(bucket|sum|count)$`)
	for _, name := range used {
		if !slices.Contains(exported, name) && !slices.Contains(exported, histogram.ReplaceAllString(name, "")) {
			t.Errorf("the alert rules use %s, which the service does not export (it exports %v)", name, exported)
		}
	}
}
