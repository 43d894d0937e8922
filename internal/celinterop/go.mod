module github.com/bpfattest/bpfattest/internal/celinterop

go 1.26.8

require github.com/google/go-eventlog v0.0.2

require (
	github.com/google/go-tpm v0.9.0 // indirect
	golang.org/x/sys v0.19.0 // indirect
	google.golang.org/protobuf v1.34.2 // indirect
)
