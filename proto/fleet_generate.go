package proto

// The fleet service's contract is generated on its own line so that it
// can change without touching the agent's.
//go:generate sh -c "protoc --proto_path=. --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative bpfattest/v1/fleet.proto"
