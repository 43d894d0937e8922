package lskel

import (
	"bytes"
	"reflect"
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
