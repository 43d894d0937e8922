package cel_test

import (
	"bytes"
	"crypto"
	"errors"
	"testing"

	"github.com/bpfattest/bpfattest/cel"
)

// TestReplayIndependent replays the sample log and compares with an
// extend chain computed here from the content bytes, without the package.
func TestReplayIndependent(t *testing.T) {
	recs := sampleLog(t)
	start := sampleStart()
	want := make(map[crypto.Hash][]byte)
	for _, h := range allBanks {
		v := start[h]
		for _, r := range recs {
			d := cel.ContentDigest(h, r.Type, r.Content)
			v = extend(h, v, d)
		}
		want[h] = v
	}
	got, err := cel.Replay(recs, start)
	if err != nil {
		t.Fatal(err)
	}
	if !equalValues(got, want) {
		t.Fatalf("replay = %x\nwant %x", got, want)
	}
	// A subset of banks replays the subset.
	sub := map[crypto.Hash][]byte{crypto.SHA256: start[crypto.SHA256]}
	for i := range recs {
		recs[i] = mustRecord(t, recs[i].RecNum, 14, []crypto.Hash{crypto.SHA256}, recs[i].Type, recs[i].Content)
	}
	got, err = cel.Replay(recs, sub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[crypto.SHA256], want[crypto.SHA256]) || len(got) != 1 {
		t.Fatalf("sha256-only replay = %x, want %x", got, want[crypto.SHA256])
	}
}

func TestReplayEmpty(t *testing.T) {
	start := sampleStart()
	got, err := cel.Replay(nil, start)
	if err != nil || !equalValues(got, start) {
		t.Fatalf("Replay(nil) = %x, %v", got, err)
	}
	if _, err := cel.Replay(nil, nil); err == nil {
		t.Fatal("Replay with no starting values: no error")
	}
	if _, err := cel.Replay(nil, map[crypto.Hash][]byte{crypto.SHA256: make([]byte, 31)}); err == nil {
		t.Fatal("Replay with a short starting value: no error")
	}
	if _, err := cel.Replay(nil, map[crypto.Hash][]byte{crypto.MD5: make([]byte, 16)}); !errors.Is(err, cel.ErrUnknownBank) {
		t.Fatalf("Replay with an md5 bank: %v", err)
	}
}

// TestCorruption damages an encoded log in the ways a disk, a bug or an
// attacker can, and checks each is reported with the record and the reason.
func TestCorruption(t *testing.T) {
	recs := sampleLog(t)
	enc := encode(t, recs)
	starts, _ := offsets(recs)
	start := sampleStart()

	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	rec := func(i int) []byte { return enc[starts[i] : starts[i]+recs[i].EncodedLen()] }
	tests := []struct {
		name  string
		log   []byte
		index int
		err   error
	}{
		{"truncated tail", enc[:len(enc)-1], 7, cel.ErrTruncated},
		{"flipped content byte", flip(enc, starts[4]+recs[4].EncodedLen()-2), 4, cel.ErrDigestMismatch},
		{"flipped digest byte", flip(enc, starts[2]+30), 2, cel.ErrDigestMismatch},
		{"flipped recnum byte", flip(enc, starts[3]+12), 3, cel.ErrSequence},
		{"flipped pcr byte", flip(enc, starts[5]+18), 5, cel.ErrPCRIndex},
		{"flipped type byte", flip(enc, starts[6]), 6, cel.ErrMalformed},
		{"reordered", cat(enc[:starts[2]], rec(3), rec(2), enc[starts[4]:]), 2, cel.ErrSequence},
		{"deleted", cat(enc[:starts[3]], enc[starts[4]:]), 3, cel.ErrSequence},
		{"inserted duplicate", cat(enc[:starts[4]], rec(3), enc[starts[4]:]), 4, cel.ErrSequence},
		{"inserted garbage", cat(enc[:starts[1]], []byte{0xff, 0, 0, 0, 1, 0}, enc[starts[1]:]), 1, cel.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := decodeAndReplay(tc.log, start)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var de *cel.DecodeError
			var re *cel.ReplayError
			switch {
			case errors.As(err, &de):
				if de.Index != tc.index {
					t.Fatalf("%v: record %d, want %d", err, de.Index, tc.index)
				}
			case errors.As(err, &re):
				if re.Index != tc.index {
					t.Fatalf("%v: record %d, want %d", err, re.Index, tc.index)
				}
			default:
				t.Fatalf("err %v has no record number", err)
			}
			t.Log(err)
		})
	}
	// A replayed log whose last record was replaced by a valid record with
	// other content replays, but not to the same value.
	other := mustRecord(t, 7, 14, allBanks, cel.BPFMeasurement, []byte("forged"))
	forged := cat(enc[:starts[7]], encode(t, []cel.Record{other}))
	recsF, err := cel.Decode(forged)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := cel.Replay(recs, start)
	b, err := cel.Replay(recsF, start)
	if err != nil || equalValues(a, b) {
		t.Fatalf("forged log replays to the same value (err %v)", err)
	}
}

func decodeAndReplay(b []byte, start map[crypto.Hash][]byte) error {
	recs, err := cel.Decode(b)
	if err != nil {
		return err
	}
	_, err = cel.Replay(recs, start)
	return err
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x40
	return out
}

func TestReplayerAtomicOnError(t *testing.T) {
	recs := sampleLog(t)
	rp, err := cel.NewReplayer(sampleStart())
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.Add(&recs[0]); err != nil {
		t.Fatal(err)
	}
	before := rp.Values()
	bad := recs[1]
	bad.Content = []byte("tampered")
	// The first bank (sha1) matches nothing, but make the failure happen on
	// the last bank: corrupt only sha512.
	bad = recs[1]
	bad.Digests = append([]cel.Digest(nil), recs[1].Digests...)
	bad.Digests[3].Value = make([]byte, 64)
	var re *cel.ReplayError
	if err := rp.Add(&bad); !errors.As(err, &re) || re.Bank != crypto.SHA512 || re.Index != 1 {
		t.Fatalf("Add(bad) = %v, want a sha512 mismatch at record 1", err)
	}
	if !equalValues(before, rp.Values()) || rp.Count() != 1 {
		t.Fatal("a failed Add changed the replay state")
	}
	clone := rp.Clone()
	if err := rp.Add(&recs[1]); err != nil {
		t.Fatal(err)
	}
	if !equalValues(clone.Values(), before) {
		t.Fatal("Clone shares state with the original")
	}
	if rp.Equal(before) || !clone.Equal(before) {
		t.Fatal("Equal is wrong")
	}
}

func TestReplayBanksMustMatch(t *testing.T) {
	r := mustRecord(t, 0, 14, []crypto.Hash{crypto.SHA256}, cel.BPFMeasurement, []byte("x"))
	_, err := cel.Replay([]cel.Record{r}, zeros([]crypto.Hash{crypto.SHA1, crypto.SHA256}))
	if !errors.Is(err, cel.ErrBanks) {
		t.Fatalf("err = %v, want ErrBanks", err)
	}
	r2 := mustRecord(t, 0, 14, []crypto.Hash{crypto.SHA1}, cel.BPFMeasurement, []byte("x"))
	_, err = cel.Replay([]cel.Record{r2}, zeros([]crypto.Hash{crypto.SHA256}))
	if !errors.Is(err, cel.ErrBanks) {
		t.Fatalf("err = %v, want ErrBanks", err)
	}
}

// TestReplayNoAllocs checks the replay loop allocates nothing per record,
// which is what lets it reach millions of records per second.
func TestReplayNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not kept under the race detector")
	}
	recs := sampleLog(t)
	rp, err := cel.NewReplayer(sampleStart())
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		r := recs[i%len(recs)]
		r.RecNum = uint64(i)
		if err := rp.Add(&r); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("Replayer.Add allocates %v times per record", allocs)
	}
}
