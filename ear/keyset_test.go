package ear

import (
	"crypto"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestKeySet: a set of every supported key type round-trips, and each
// token verifies with the set by its kid; a token of a key not in the set,
// or with another algorithm than its key's entry states, does not.
func TestKeySet(t *testing.T) {
	ks := keys(t)
	var pubs []PublicKey
	for alg, k := range ks {
		if alg == RS256 {
			continue // the RSA key is listed once, for PS256
		}
		pubs = append(pubs, PublicKey{Key: k.Public(), Algorithm: alg})
	}
	b, err := MarshalKeySet(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Keys) != len(pubs) {
		t.Fatalf("set %s: %v", b, err)
	}
	for _, k := range raw.Keys {
		if k["use"] != "sig" || k["kid"] == "" || k["alg"] == "" || k["d"] != nil {
			t.Errorf("key entry %v: want use sig, a kid, an alg and no private part", k)
		}
	}
	set, err := ParseKeySet(b)
	if err != nil || set.Len() != len(pubs) {
		t.Fatalf("ParseKeySet: %v (%d keys)", err, set.Len())
	}
	c := sampleClaims(t)
	for alg, k := range ks {
		tok, err := Sign(c, k, alg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifyWithKeySet(tok, set, at)
		switch {
		case alg == RS256:
			// The set lists the RSA key for PS256 only.
			if !errors.Is(err, ErrSignature) {
				t.Errorf("RS256 token, key listed for PS256: %v, want ErrSignature", err)
			}
		case err != nil:
			t.Errorf("%s: %v", alg, err)
		case got.Algorithm != alg:
			t.Errorf("%s: verified as %s", alg, got.Algorithm)
		}
	}
	other := mustP256(t)
	tok, err := Sign(c, other, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyWithKeySet(tok, set, at); !errors.Is(err, ErrKeySet) {
		t.Errorf("a token of a key not in the set: %v, want ErrKeySet", err)
	}
}

// TestParseKeySetRefuses: what a published set must not be.
func TestParseKeySetRefuses(t *testing.T) {
	k := mustP256(t)
	pub := jose.JSONWebKey{Key: k.Public(), KeyID: "a", Use: "sig"}
	entry := func(jk jose.JSONWebKey) string {
		b, err := jk.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	priv := entry(jose.JSONWebKey{Key: k, KeyID: "p", Use: "sig"})
	enc := pub
	enc.Use = "enc"
	noKid := pub
	noKid.KeyID = ""
	wrongAlg := pub
	wrongAlg.Algorithm = "RS256"
	many := make([]string, MaxKeySetKeys+1)
	for i := range many {
		jk := pub
		jk.KeyID = strings.Repeat("k", i+1)
		many[i] = entry(jk)
	}
	for _, tc := range []struct{ name, set, want string }{
		{"not JSON", "{", "unexpected EOF"},
		{"no keys", `{"keys":[]}`, "no keys"},
		{"trailing data", `{"keys":[` + entry(pub) + `]} {}`, "data after the set"},
		{"private key", `{"keys":[` + priv + `]}`, "is a private key"},
		{"encryption key", `{"keys":[` + entry(enc) + `]}`, "not signatures"},
		{"no kid", `{"keys":[` + entry(noKid) + `]}`, "has no kid"},
		{"kid twice", `{"keys":[` + entry(pub) + "," + entry(pub) + `]}`, `kid "a" twice`},
		{"algorithm of another key type", `{"keys":[` + entry(wrongAlg) + `]}`, "does not fit"},
		{"too many keys", `{"keys":[` + strings.Join(many, ",") + `]}`, "keys, limit"},
		{"too large", `{"keys":[` + strings.Repeat(" ", MaxKeySetSize) + `]}`, "bytes, limit"},
		{"symmetric key (a secret)", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`, "is a private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeySet([]byte(tc.set))
			if !errors.Is(err, ErrKeySet) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want ErrKeySet naming %q", err, tc.want)
			}
		})
	}
}

// FuzzParseKeySet: any bytes never panic the parser; every key of a set it
// accepts is a public key Verify supports, and the set marshals again to
// one that parses to the same keys.
func FuzzParseKeySet(f *testing.F) {
	k := mustP256(f)
	good, err := MarshalKeySet(PublicKey{Key: k.Public()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":"","kid":"x"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := ParseKeySet(b)
		if err != nil {
			if !errors.Is(err, ErrKeySet) {
				t.Fatalf("error not wrapping ErrKeySet: %v", err)
			}
			return
		}
		var pubs []PublicKey
		for kid, pk := range set.keys {
			if _, err := DefaultAlgorithm(pk.Key); err != nil {
				t.Fatalf("accepted key %q: %v", kid, err)
			}
			if _, ok := pk.Key.(crypto.Signer); ok {
				t.Fatalf("accepted key %q is a private key", kid)
			}
			pubs = append(pubs, pk)
		}
		again, err := MarshalKeySet(pubs...)
		if err != nil {
			t.Fatalf("accepted keys do not marshal: %v", err)
		}
		set2, err := ParseKeySet(again)
		if err != nil || set2.Len() != set.Len() {
			t.Fatalf("marshalled set does not parse back: %v\n%s", err, again)
		}
	})
}
