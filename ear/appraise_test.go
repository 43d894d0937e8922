package ear

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func claimOf(vec *Vector, name string) Claim {
	for _, c := range vec.Claims() {
		if c.Name == name {
			return c.Value
		}
	}
	panic(name)
}

// TestRows checks each row of the mapping (docs/ear.md) on a verdict built
// to hold exactly that row's reason: the claim's value, the status, and
// that the claims-set around it validates. The other claims of each row
// are in its golden file (TestGolden).
func TestRows(t *testing.T) {
	for _, r := range rows() {
		t.Run(r.name, func(t *testing.T) {
			a := Appraise(r.v)
			if got := claimOf(a.Vector, r.claim); got != r.want {
				t.Errorf("%s = %d (%s), want %d (%s)\nreasons: %v", r.claim, got, got.Tier(), r.want, r.want.Tier(), a.Reasons)
			}
			if a.Status != r.status {
				t.Errorf("status %s, want %s (vector %+v)", a.Status, r.status, *a.Vector)
			}
			if a.Reasons[r.claim] == "" {
				t.Errorf("no reason for %s", r.claim)
			}
			c, err := FromVerdict(r.v, Options{PolicyIDs: []string{PolicyID([]byte("version: 1\n"))}})
			if err != nil {
				t.Fatal(err)
			}
			if *c.Status != a.Status || c.Subject != r.v.Host {
				t.Errorf("claims: status %s subject %q", *c.Status, c.Subject)
			}
			if verified(r.v) != (len(c.Submods[SubmodLabel].Nonce) > 0) {
				t.Errorf("evidence nonce %x for status %s", c.Submods[SubmodLabel].Nonce, r.v.Status)
			}
		})
	}
}

// TestRowsDocumented: every value a row gives is a line of docs/ear.md's
// mapping table ("| `claim` | value | …"), and every such line has a row.
func TestRowsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "docs", "ear.md"))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile("(?m)^\\| `([a-z-]+|every claim)` \\| (-?[0-9]+) \\|")
	doc := map[string]bool{}
	for _, m := range line.FindAllStringSubmatch(string(b), -1) {
		doc[m[1]+"="+m[2]] = true
	}
	covered := map[string]bool{}
	for _, r := range rows() {
		a := Appraise(r.v)
		for _, c := range a.Vector.Claims() {
			if slices.Contains(claimed, c.Name) {
				covered[c.Name+"="+itoa(c.Value)] = true
			}
		}
	}
	for k := range covered {
		name, val, _ := strings.Cut(k, "=")
		if !doc[k] && !doc["every claim="+val] {
			t.Errorf("%s = %s is not in docs/ear.md's table", name, val)
		}
	}
	for k := range doc {
		name, val, _ := strings.Cut(k, "=")
		ok := covered[k]
		if name == "every claim" {
			ok = true
			for _, n := range claimed {
				ok = ok && covered[n+"="+val]
			}
		}
		if !ok {
			t.Errorf("docs/ear.md has %s = %s, which no row gives", name, val)
		}
	}
}

func itoa(c Claim) string { return strconv.Itoa(int(c)) }

// golden is what a golden file holds: the appraisal without the verdict
// it was made from.
type golden struct {
	Status  Tier              `json:"ear_status"`
	Vector  *Vector           `json:"ear_trustworthiness_vector"`
	Reasons map[string]string `json:"reasons"`
}

func goldenOf(v *verifier.Verdict) []byte {
	a := Appraise(v)
	b, err := json.MarshalIndent(golden{a.Status, a.Vector, a.Reasons}, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// TestGolden compares the whole appraisal of each row's verdict and of
// each verdict in testdata/verdicts (verdicts of real verifications,
// written by cmd/bpfattest's TestEARRealVerdicts) with its golden file in
// testdata/golden; -update rewrites them.
func TestGolden(t *testing.T) {
	cases := map[string]*verifier.Verdict{}
	for _, r := range rows() {
		cases["row-"+r.name] = r.v
	}
	files, err := filepath.Glob(filepath.Join("testdata", "verdicts", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no verdicts in testdata/verdicts")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v verifier.Verdict
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cases[strings.TrimSuffix(filepath.Base(f), ".json")] = &v
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			got := goldenOf(v)
			path := filepath.Join("testdata", "golden", name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("appraisal differs from %s:\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}
