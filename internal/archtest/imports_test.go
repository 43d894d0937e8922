package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

const module = "github.com/bpfattest/bpfattest"

// rule says which of our packages a package (and its subpackages, unless a
// more specific rule exists) may depend on, and which third-party prefixes
// it must not depend on.
type rule struct {
	pkg       string   // relative to the module
	allowOurs []string // relative package prefixes
	denyThird []string // import path prefixes
}

var pureDeny = []string{
	"google.golang.org/grpc",
	"github.com/google/go-tpm",
	"github.com/google/go-attestation",
	"golang.org/x/sys/unix",
	"unsafe",
	"runtime/cgo",
}

func rules() []rule {
	return []rule{
		{pkg: "measure/cms", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "measure/cel", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "measure", allowOurs: []string{"measure/cms"}, denyThird: pureDeny},
		{pkg: "internal/tpm", allowOurs: []string{"internal/testutil"}, denyThird: []string{"google.golang.org/grpc"}},
		{pkg: "internal/bpfsys", allowOurs: []string{"internal/testutil"}, denyThird: []string{"google.golang.org/grpc", "github.com/google/go-tpm"}},
		{pkg: "agent/journal", allowOurs: []string{"measure/cel", "internal/tpm"}, denyThird: []string{"google.golang.org/grpc"}},
		{pkg: "attest", allowOurs: []string{"measure", "proto"}, denyThird: []string{"golang.org/x/sys/unix", "runtime/cgo"}},
	}
}

// deps lists the non-test dependencies of pkg (with GOOS=linux, cgo as configured).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg)
	cmd.Dir = testutil.RepoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	var list []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		list = append(list, sc.Text())
	}
	return list
}

func packages(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "./...")
	cmd.Dir = testutil.RepoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	return strings.Fields(string(out))
}

// ruleFor returns the most specific rule covering rel, if any.
func ruleFor(rel string) (rule, bool) {
	best, found := rule{}, false
	for _, r := range rules() {
		if rel == r.pkg || strings.HasPrefix(rel, r.pkg+"/") {
			if !found || len(r.pkg) > len(best.pkg) {
				best, found = r, true
			}
		}
	}
	return best, found
}

func hasPrefixPath(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func TestImportGraph(t *testing.T) {
	for _, full := range packages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(full, module), "/")
		if rel == "" || strings.HasPrefix(rel, "internal/archtest") || strings.HasPrefix(rel, "internal/testutil") {
			continue
		}
		r, ok := ruleFor(rel)
		for _, d := range deps(t, full) {
			if d == full {
				continue
			}
			if hasPrefixPath(d, module) {
				drel := strings.TrimPrefix(strings.TrimPrefix(d, module), "/")
				if hasPrefixPath(drel, "cmd") {
					t.Errorf("%s imports %s: nothing may import cmd/", rel, drel)
				}
				if hasPrefixPath(drel, "internal/testutil") && !strings.HasSuffix(rel, "test") {
					t.Errorf("%s imports %s: testutil is for tests only", rel, drel)
				}
				if !ok || hasPrefixPath(drel, r.pkg) {
					continue
				}
				allowed := false
				for _, a := range r.allowOurs {
					if hasPrefixPath(drel, a) {
						allowed = true
					}
				}
				if !allowed {
					t.Errorf("%s imports %s: not allowed by docs/architecture.md", rel, drel)
				}
				continue
			}
			if !ok {
				continue
			}
			for _, deny := range r.denyThird {
				if hasPrefixPath(d, deny) {
					t.Errorf("%s depends on %s: forbidden for this package", rel, d)
				}
			}
		}
	}
}

// TestPackagesDocumented fails when one of our packages has no package doc comment.
func TestPackagesDocumented(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", "./...")
	cmd.Dir = testutil.RepoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, doc, _ := strings.Cut(line, "\t")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no doc comment", path)
		}
	}
}
