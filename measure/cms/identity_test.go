package cms

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrustStoreIdentity checks that the identity a cache of verdicts keys
// on changes with every certificate of the store and with their order, and
// only with them.
func TestTrustStoreIdentity(t *testing.T) {
	a, _ := newSelfSigned(t, "identity a")
	b, _ := newSelfSigned(t, "identity b")
	var nilStore *TrustStore
	ids := map[string][32]byte{
		"nil":   nilStore.Identity(),
		"empty": NewTrustStore().Identity(),
		"a":     NewTrustStore(a).Identity(),
		"b":     NewTrustStore(b).Identity(),
		"a,b":   NewTrustStore(a, b).Identity(),
		"b,a":   NewTrustStore(b, a).Identity(),
	}
	if ids["nil"] != ids["empty"] {
		t.Error("a nil store and an empty one differ")
	}
	if NewTrustStore(a, nil).Identity() != ids["a"] {
		t.Error("a nil certificate changes the identity")
	}
	if NewTrustStore(a).Identity() != ids["a"] {
		t.Error("two stores of the same certificate differ")
	}
	seen := map[[32]byte]string{}
	for name, id := range ids {
		if name == "nil" {
			continue
		}
		if other, dup := seen[id]; dup {
			t.Errorf("stores %q and %q have the same identity", name, other)
		}
		seen[id] = name
	}
}

// TestVerdictIsPure guards what measure's cache of verdicts relies on (see
// "Cached verdicts" in package measure): nothing in this package reads the
// clock or the environment, so a verdict is a function of the signature,
// the content and the trust store. If this fails, a cached verdict must be
// rechecked against what was added on every use, or the cache removed.
func TestVerdictIsPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string]bool{
		"time.Now": true, "time.Since": true, "time.Until": true, "time.Tick": true,
		"time.After": true, "time.NewTimer": true, "time.NewTicker": true,
		"os.Getenv": true, "os.LookupEnv": true, "os.Environ": true,
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && banned[x.Name+"."+sel.Sel.Name] {
				t.Errorf("%s: %s.%s: a verdict would depend on more than its inputs", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
			}
			return true
		})
	}
}
