// Package proto holds bpfattest's wire contract: the versioned protobuf
// packages below it (bpfattest/v1) and the one command that regenerates
// their Go code.
//
// The contract is a leaf: the .proto files and the generated code import
// nothing of this module. TPM structures (TPMT_PUBLIC, TPMS_ATTEST,
// TPMT_SIGNATURE) and event log records (CEL TLV) cross the wire as the
// bytes the TPM or the log produced; only a verifier parses them. Domain
// types convert to and from these messages at the edges (the agent's gRPC
// service, the command-line clients); the messages are not the internal
// model.
//
// Regenerate with
//
//	go generate ./proto/...
//
// It needs protoc on PATH (Debian package protobuf-compiler, 3.21.12) and
// runs the generator plugins pinned in go.mod's tool block
// (google.golang.org/protobuf/cmd/protoc-gen-go and
// google.golang.org/grpc/cmd/protoc-gen-go-grpc); `go tool -n` builds them
// at the pinned versions and prints their paths. The generated
// *.pb.go and *_grpc.pb.go files are committed; regenerating must leave
// them unchanged.
package proto

//go:generate sh -c "protoc --proto_path=. --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative bpfattest/v1/attest.proto bpfattest/v1/agent.proto"
