package cel_test

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/bpfattest/bpfattest/cel"
)

// Example builds one record, shows its bytes, and replays it from a zero
// PCR. The numbers are the worked example in docs/event-log.md.
func Example() {
	r, err := cel.NewRecord(0, 14, []crypto.Hash{crypto.SHA256}, cel.BPFMeasurement, []byte("hello"))
	if err != nil {
		panic(err)
	}
	b, err := r.MarshalBinary()
	if err != nil {
		panic(err)
	}
	fmt.Println("record:", hex.EncodeToString(b))
	fmt.Println("digest:", hex.EncodeToString(r.Digests[0].Value))

	recs, err := cel.Decode(b)
	if err != nil {
		panic(err)
	}
	rp, err := cel.NewReplayer(map[crypto.Hash][]byte{crypto.SHA256: make([]byte, 32)})
	if err != nil {
		panic(err)
	}
	for i := range recs {
		if err := rp.Add(&recs[i]); err != nil {
			panic(err)
		}
	}
	fmt.Println("pcr14: ", hex.EncodeToString(rp.Values()[crypto.SHA256]))
	if err := cel.WriteText(os.Stdout, recs, nil); err != nil {
		panic(err)
	}
	// Output:
	// record: 0000000008000000000000000001000000010e03000000250b000000200f8d7352654974c494a06a22a63f607baf90da74b5c4f420d446abfb149ec74bb00000000a010000000568656c6c6f
	// digest: 0f8d7352654974c494a06a22a63f607baf90da74b5c4f420d446abfb149ec74b
	// pcr14:  cbfa1a8cb7d2668e7c45166960ecf0e7a51d8e1f19bfae2eca2eca2c44e2c4d9
	// 14 0f8d7352654974c494a06a22a63f607baf90da74b5c4f420d446abfb149ec74b bpf_measurement recnum=0 len=5
}
