//go:build race

package attest

// raceEnabled: the race detector's sync.Pool drops what is put back at
// random, so allocation counts mean nothing under it.
const raceEnabled = true
