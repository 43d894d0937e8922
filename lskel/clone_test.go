package lskel

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"testing"
)

// TestLayoutCloneFor: CloneFor gives an equal Layout that shares no memory
// with the original except the blob its programs' instructions are slices
// of, which is the one given.
func TestLayoutCloneFor(t *testing.T) {
	for _, name := range []string{"counter.signed.lskel.h", "pair.lskel.h", "rocfg.signed.lskel.h"} {
		t.Run(name, func(t *testing.T) {
			a, l := analyzeFixture(t, name)
			if h, err := AnalyzeHashed(a.Insns, a.Data, l.DataSHA256); err != nil || !reflect.DeepEqual(h, l) {
				t.Errorf("AnalyzeHashed differs from Analyze (%v)", err)
			}
			data := bytes.Clone(a.Data)
			c := l.CloneFor(data)
			if !reflect.DeepEqual(c, l) {
				t.Fatal("the clone differs")
			}
			for i, p := range c.Programs {
				if &p.Insns[0] != &data[p.InsnOffset] {
					t.Errorf("program %d: instructions are not slices of the given blob", i)
				}
			}
			// Every slice of the clone is its own: no element's address is
			// one of the original's.
			var walk func(path string, x, y reflect.Value)
			walk = func(path string, x, y reflect.Value) {
				switch x.Kind() {
				case reflect.Pointer:
					if !x.IsNil() {
						walk(path, x.Elem(), y.Elem())
					}
				case reflect.Struct:
					for i := range x.NumField() {
						if f := x.Type().Field(i); f.Name != "Insns" {
							walk(path+"."+f.Name, x.Field(i), y.Field(i))
						}
					}
				case reflect.Slice:
					if x.Len() > 0 && x.Index(0).Addr().Pointer() == y.Index(0).Addr().Pointer() {
						t.Errorf("%s shares memory with the original", path)
					}
					for i := range min(x.Len(), y.Len()) {
						walk(path, x.Index(i), y.Index(i))
					}
				}
			}
			walk("Layout", reflect.ValueOf(c), reflect.ValueOf(l))
			if kept := l.CloneFor(nil); len(kept.Programs) > 0 && kept.Programs[0].Insns != nil {
				t.Error("CloneFor(nil) keeps instructions")
			}
		})
	}
}

// TestAnalyzeScratchReuse: Analyze reuses its working memory from one call
// to the next (walkScratch); whatever ran before, in any order and
// concurrently, the Layout of a loader is the same.
func TestAnalyzeScratchReuse(t *testing.T) {
	var arts []*Artifact
	var want []*Layout
	for _, f := range headerFiles() {
		a, l := analyzeFixture(t, f)
		arts, want = append(arts, a), append(want, l)
	}
	check := func(i int) error {
		got, err := Analyze(arts[i].Insns, arts[i].Data)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want[i]) {
			return fmt.Errorf("%s: the Layout changed with what Analyze did before", arts[i].Name)
		}
		return nil
	}
	for i := len(arts) - 1; i >= 0; i-- {
		if err := check(i); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(arts))
	for g := range 4 {
		wg.Go(func() {
			for k := range 3 * len(arts) {
				if err := check((g + k) % len(arts)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
