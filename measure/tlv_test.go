package measure

import (
	"fmt"
	"testing"
)

// TestItemName: the names of items are those fmt formats.
func TestItemName(t *testing.T) {
	for _, what := range []string{"program", "map", "transient program", "x"} {
		for i := range 10 {
			if got, want := itemName(what, i), fmt.Sprintf("%s %d", what, i); got != want {
				t.Errorf("itemName(%q, %d) = %q, want %q", what, i, got, want)
			}
		}
	}
}
