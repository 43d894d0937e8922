package cms

import (
	"strings"
	"testing"
)

// TestLoadTrustLimit proves a trust file past MaxTrustFileSize is refused
// with an error naming the limit, after reading no more than the limit: an
// endless device stands in for a huge file.
func TestLoadTrustLimit(t *testing.T) {
	_, err := LoadTrust("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "more than 4194304 bytes") {
		t.Fatalf("err %v, want the size limit", err)
	}
}
