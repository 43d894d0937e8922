package main

// Limits of the files the CLI reads whose format has no limit of its own
// (each read with boundedfile.ReadFile).
const (
	maxKeyFileSize = 1 << 20 // a PEM or DER key or certificate (bundle)
	maxLogFileSize = 1 << 30 // an event log given to "bpfattest log"
)
