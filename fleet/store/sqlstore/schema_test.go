package sqlstore

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// shipped are the SHA-256 digests of the migrations releases have run:
// a database a release wrote is upgraded by the migrations after its
// version, so these never change (the upgrade tests make a version 1
// database with migration 1 as it shipped).
var shipped = []string{
	"1ebd2beb4f3078e5a55ce6656dd7ade60e2e826eb51c58b34f328eee2f1c3201",
	"ebc8603fd1c948920a356400deba580188e935eeb46204453b64cc4821ff248a",
}

// TestShippedMigrations: no shipped migration was edited, and each has
// its digest here.
func TestShippedMigrations(t *testing.T) {
	if len(migrations) != len(shipped) {
		t.Errorf("%d migrations, %d shipped digests: add the new migration's digest", len(migrations), len(shipped))
	}
	for i := range min(len(migrations), len(shipped)) {
		d := sha256.Sum256([]byte(migrations[i]))
		if got := hex.EncodeToString(d[:]); got != shipped[i] {
			t.Errorf("migration %d changed: sha256 %s, shipped %s", i+1, got, shipped[i])
		}
	}
}
