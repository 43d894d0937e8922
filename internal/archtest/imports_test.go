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
		{pkg: "internal/boundedfile", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "internal/atomicfile", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "internal/ratelimit", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		// A persistent map (the verifier's inventory): the standard library only.
		{pkg: "internal/pmap", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "measure/cms", allowOurs: []string{"internal/boundedfile"}, denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "cel", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "lskel", denyThird: pureDeny},
		{pkg: "measure", allowOurs: []string{"lskel", "measure/cms", "internal/boundedfile"}, denyThird: pureDeny},
		{pkg: "internal/tpm", allowOurs: []string{"internal/testutil", "internal/boundedfile", "internal/atomicfile"}, denyThird: []string{"google.golang.org/grpc"}},
		{pkg: "internal/progevents", denyThird: []string{"google.golang.org/grpc", "github.com/google/go-tpm", "github.com/cilium/ebpf"}},
		{pkg: "internal/bpfsys", allowOurs: []string{"internal/testutil"}, denyThird: []string{"google.golang.org/grpc", "github.com/google/go-tpm"}},
		{pkg: "agent/journal", allowOurs: []string{"cel", "internal/tpm", "internal/boundedfile"}, denyThird: []string{"google.golang.org/grpc"}},
		{pkg: "evidence", allowOurs: []string{"cel", "proto"}, denyThird: pureDeny},
		// The agent builds evidence and never links the verifier (attest).
		{pkg: "agent", allowOurs: []string{"cel", "evidence", "lskel", "measure", "proto", "internal/tpm", "internal/bpfsys", "internal/progevents", "agent/journal", "internal/boundedfile", "internal/atomicfile", "internal/ratelimit"}, denyThird: []string{"google.golang.org/grpc"}},
		{pkg: "proto", denyThird: []string{"golang.org/x/sys/unix", "runtime/cgo"}},
		{pkg: "internal/unixsock", denyThird: []string{"google.golang.org/grpc", "github.com/google/go-tpm", "github.com/cilium/ebpf"}},
		{pkg: "agent/service", allowOurs: []string{"agent", "cel", "evidence", "lskel", "measure", "proto", "internal/tpm", "agent/journal", "internal/bpfsys", "internal/progevents", "internal/boundedfile", "internal/atomicfile", "internal/unixsock", "internal/ratelimit"}},
		// The daemon does not link the verifier either.
		{pkg: "cmd/bpfattestd", allowOurs: []string{"agent", "cel", "evidence", "lskel", "measure", "proto", "internal/tpm", "agent/journal", "internal/bpfsys", "internal/progevents", "internal/boundedfile", "internal/atomicfile", "internal/sdnotify", "internal/unixsock", "internal/ratelimit", "internal/cmdrun"}},
		// sd_notify and socket activation: the standard library only.
		{pkg: "internal/sdnotify", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "attest", allowOurs: []string{"bootchain", "cel", "evidence", "lskel", "measure", "proto", "internal/boundedfile", "internal/pmap"}, denyThird: []string{"golang.org/x/sys/unix", "runtime/cgo"}},
		// The verifier library: what a fleet service reuses; never the agent.
		{pkg: "verifier", allowOurs: []string{"attest", "bootchain", "cel", "evidence", "lskel", "measure", "proto", "internal/boundedfile", "internal/atomicfile", "internal/pmap"}, denyThird: []string{"golang.org/x/sys/unix", "runtime/cgo", "github.com/google/go-tpm"}},
		// ear: the verdict as an EAR (AR4SI vector, JWT); reads verifier's
		// Verdict, signs with go-jose. No gRPC, TPM or system calls of its own.
		{pkg: "ear", allowOurs: []string{"verifier", "attest", "bootchain", "cel", "evidence", "lskel", "measure", "proto", "internal/boundedfile", "internal/atomicfile", "internal/pmap"},
			denyThird: []string{"google.golang.org/grpc", "golang.org/x/sys/unix", "unsafe", "runtime/cgo", "github.com/google/go-tpm", "github.com/google/go-attestation"}},
		// The fleet service: the verifier's judgement behind a store; never
		// the agent. Its store interface is a leaf, its engines see only it.
		{pkg: "fleet", allowOurs: fleetOurs, denyThird: []string{"golang.org/x/sys/unix", "runtime/cgo", "github.com/google/go-tpm"}},
		{pkg: "fleet/store", denyThird: append([]string{"github.com/cilium/ebpf"}, pureDeny...)},
		{pkg: "fleet/store/sqlstore", allowOurs: []string{"fleet/store"}, denyThird: pureDeny},
		{pkg: "fleet/store/sqlite", allowOurs: []string{"fleet/store"}, denyThird: pureDeny},
		{pkg: "fleet/store/postgres", allowOurs: []string{"fleet/store"}, denyThird: pureDeny},
		{pkg: "fleet/store/storetest", allowOurs: []string{"fleet/store"}, denyThird: pureDeny},
		// The push sidecar's side: the verifier's fetch, not the service.
		{pkg: "fleet/pushclient", allowOurs: verifierOurs, denyThird: []string{"golang.org/x/sys/unix", "runtime/cgo", "github.com/google/go-tpm"}},
		{pkg: "cmd/bpfattest-verifierd", allowOurs: append([]string{"internal/cmdrun"}, fleetOurs...)},
		{pkg: "internal/cmdrun", allowOurs: []string{}, denyThird: pureDeny},
		{pkg: "cmd/bpfattest-push", allowOurs: append([]string{"fleet/pushclient"}, verifierOurs...)},
		// The load generator builds TPM structures; only tests and bench use it.
		{pkg: "bench/fleetsim", allowOurs: []string{"cel", "evidence", "lskel", "measure", "proto", "internal/boundedfile"}, denyThird: []string{"golang.org/x/sys/unix", "runtime/cgo"}},
		// bootchain: pure, a leaf; go-attestation (event log, Secure Boot)
		// and go-tpm's structures only, never a transport or the simulator.
		{pkg: "bootchain", denyThird: []string{"google.golang.org/grpc", "golang.org/x/sys/unix", "unsafe", "runtime/cgo",
			"github.com/google/go-tpm/tpm2/transport", "github.com/google/go-tpm-tools", "github.com/cilium/ebpf"}},
	}
}

// verifierOurs is what package verifier may depend on; fleetOurs adds the
// fleet packages.
var (
	verifierOurs = []string{"verifier", "attest", "bootchain", "cel", "evidence", "lskel", "measure", "proto", "internal/boundedfile", "internal/atomicfile", "internal/pmap"}
	fleetOurs    = append([]string{"fleet", "ear"}, verifierOurs...)
)

// pkgInfo is one of our packages: its direct imports and all its
// dependencies (non-test, GOOS=linux, cgo as configured).
type pkgInfo struct {
	path    string
	imports []string
	deps    []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}", "./...")
	cmd.Dir = testutil.RepoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkgInfo
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "|", 3)
		if len(f) != 3 {
			t.Fatalf("go list line %q", sc.Text())
		}
		pkgs = append(pkgs, pkgInfo{path: f[0], imports: splitList(f[1]), deps: splitList(f[2])})
	}
	return pkgs
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
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

// TestImportGraph checks, for each of our packages, every package of ours
// it depends on (transitively) against the allowed table, and its direct
// third-party imports against the forbidden list.
func TestImportGraph(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.path, module), "/")
		if rel == "" || strings.HasPrefix(rel, "internal/archtest") || strings.HasPrefix(rel, "internal/testutil") {
			continue
		}
		r, ok := ruleFor(rel)
		for _, d := range p.deps {
			if !hasPrefixPath(d, module) {
				continue
			}
			drel := strings.TrimPrefix(strings.TrimPrefix(d, module), "/")
			if hasPrefixPath(drel, "cmd") {
				t.Errorf("%s imports %s: nothing may import cmd/", rel, drel)
			}
			if hasPrefixPath(drel, "agent/service") && !hasPrefixPath(rel, "cmd") {
				t.Errorf("%s imports %s: only cmd/ may import the service layer", rel, drel)
			}
			if hasPrefixPath(drel, "bench") && !hasPrefixPath(rel, "bench") {
				t.Errorf("%s imports %s: the load generator and harnesses are for tests and benchmarks only", rel, drel)
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
				t.Errorf("%s depends on %s: not allowed by docs/architecture.md", rel, drel)
			}
		}
		if !ok {
			continue
		}
		for _, imp := range p.imports {
			if (imp == "golang.org/x/sys/unix" || imp == "unsafe") && !syscallOwner(rel) {
				t.Errorf("%s imports %s: system calls and unsafe belong to internal/bpfsys, internal/progevents and internal/unixsock", rel, imp)
			}
			for _, deny := range r.denyThird {
				if hasPrefixPath(imp, deny) {
					t.Errorf("%s imports %s: forbidden for this package", rel, imp)
				}
			}
		}
	}
}

// syscallOwner reports whether package rel may import golang.org/x/sys/unix
// and unsafe: the three small packages that own system calls (bpf(), perf
// events, the local socket's credentials and file), and the generated
// protobuf code.
func syscallOwner(rel string) bool {
	return rel == "internal/bpfsys" || rel == "internal/progevents" || rel == "internal/unixsock" || hasPrefixPath(rel, "proto")
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
