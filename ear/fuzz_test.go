package ear

import (
	"encoding/json"
	"testing"
)

// FuzzEARVerify feeds Verify any token, and any payload signed with the
// key (so that the claims checks are reached past the signature): it never
// panics, and what it accepts validates again and survives a round trip
// through JSON unchanged.
func FuzzEARVerify(f *testing.F) {
	k := mustP256(f)
	c := sampleClaims(f)
	good, err := Sign(c, k, "")
	if err != nil {
		f.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	f.Add(good, payload)
	f.Add("", []byte(`{}`))
	f.Add("a.b.c", []byte(`{"eat_profile":"tag:ietf.org,2026:rats/ear#03","iat":1,"ear_verifier_id":{"build":"b","developer":"d"},"submods":{"x":{"ear_status":"none"}}}`))
	for _, r := range rows() {
		rc, err := FromVerdict(r.v, Options{})
		if err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(rc)
		f.Add("", b)
	}
	f.Fuzz(func(t *testing.T, token string, payload []byte) {
		check := func(tok *Token, err error) {
			if err != nil {
				return
			}
			if err := tok.Claims.Validate(); err != nil {
				t.Fatalf("accepted claims do not validate: %v", err)
			}
			b, err := json.Marshal(tok.Claims)
			if err != nil {
				t.Fatalf("accepted claims do not encode: %v", err)
			}
			again, err := ParseClaims(b)
			if err != nil {
				t.Fatalf("accepted claims do not parse again: %v\n%s", err, b)
			}
			b2, _ := json.Marshal(again)
			if string(b) != string(b2) {
				t.Fatalf("round trip changed the claims:\n%s\n%s", b, b2)
			}
		}
		check(Verify(token, k.Public(), at))
		if len(payload) > 1<<16 {
			return
		}
		signed := signRaw(t, payload, k, ES256, false)
		check(Verify(signed, k.Public(), at))
		ParseClaims(payload)
	})
}
