package evidence

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// ParseJSON decodes an evidence file, the bpfattest.v1.Evidence message in
// the proto3 JSON mapping (what `bpfattest quote --out` writes), and
// validates it as FromProto does.
// Unknown fields are refused. The caller bounds the input's size.
func ParseJSON(b []byte) (*Evidence, error) {
	var m pb.Evidence
	if err := protojson.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("evidence/json: %w", err)
	}
	return FromProto(&m)
}
