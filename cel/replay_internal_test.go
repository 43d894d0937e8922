package cel

import "crypto"

// Replay folds recs into start with a Replayer and returns the PCR values
// after the last record. It exists only in the test binary.
func Replay(recs []Record, start map[crypto.Hash][]byte) (map[crypto.Hash][]byte, error) {
	rp, err := NewReplayer(start)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if err := rp.Add(&recs[i]); err != nil {
			return nil, err
		}
	}
	return rp.Values(), nil
}
