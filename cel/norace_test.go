//go:build !race

package cel_test

const raceEnabled = false
