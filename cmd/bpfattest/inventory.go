package main

import "github.com/bpfattest/bpfattest/verifier"

// parseInventory reads a scan inventory (verifier.ParseInventory).
func parseInventory(path, stateDir string) ([]verifier.Target, error) {
	return verifier.ParseInventory(path, stateDir)
}
