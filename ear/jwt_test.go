package ear

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// keys returns a key of each kind Sign supports, by the algorithm it
// signs with by default.
func keys(t testing.TB) map[Algorithm]crypto.Signer {
	t.Helper()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return map[Algorithm]crypto.Signer{ES256: p256, ES384: p384, PS256: rsaKey, EdDSA: ed}
}

func sampleClaims(t testing.TB) *Claims {
	t.Helper()
	c, err := FromVerdict(base(), Options{
		Now:       func() time.Time { return time.Unix(1795000000, 0) },
		Validity:  time.Hour,
		PolicyIDs: []string{PolicyID([]byte("version: 1\n"))},
		Nonce:     []byte("relying-party-nonce"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var at = VerifyOptions{Now: func() time.Time { return time.Unix(1795000100, 0) }}

// TestSignVerify: a token of each algorithm verifies with the signer's
// public key, read back from PEM as a relying party would, and carries the
// claims it was made from; RSA keys also sign RS256 when asked.
func TestSignVerify(t *testing.T) {
	c := sampleClaims(t)
	ks := keys(t)
	ks[RS256] = ks[PS256]
	for alg, k := range ks {
		t.Run(string(alg), func(t *testing.T) {
			ask := Algorithm("")
			if alg == RS256 {
				ask = RS256
			}
			tok, err := Sign(c, k, ask)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKIXPublicKey(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Verify(tok, pub, at)
			if err != nil {
				t.Fatal(err)
			}
			kid, _ := KeyID(k.Public())
			if got.Algorithm != alg || got.KeyID != kid {
				t.Errorf("alg %s kid %s, want %s %s", got.Algorithm, got.KeyID, alg, kid)
			}
			if d := cmp.Diff(c, got.Claims); d != "" {
				t.Errorf("claims differ (-signed +verified):\n%s", d)
			}
			h, _, _ := strings.Cut(tok, ".")
			hb, _ := base64.RawURLEncoding.DecodeString(h)
			var hdr map[string]any
			if err := json.Unmarshal(hb, &hdr); err != nil || hdr["typ"] != "JWT" || hdr["alg"] != string(alg) || hdr["kid"] != kid || len(hdr) != 3 {
				t.Errorf("protected header %s", hb)
			}
		})
	}
}

// signRaw signs any payload with any header, for tokens Sign would refuse
// to make.
func signRaw(t testing.TB, payload []byte, key crypto.Signer, alg Algorithm, crit bool) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if crit {
		opts = opts.WithHeader("x-must-understand", true).WithCritical("x-must-understand")
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	o, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := o.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// edit decodes c's JSON form, lets f change it, and encodes it again.
func edit(t testing.TB, c *Claims, f func(m map[string]any)) []byte {
	t.Helper()
	b, _ := json.Marshal(c)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func submod(m map[string]any) map[string]any {
	return m["submods"].(map[string]any)[SubmodLabel].(map[string]any)
}

// TestVerifyRefuses: each way a token can be wrong is refused, as a
// signature error or a claims error.
func TestVerifyRefuses(t *testing.T) {
	c := sampleClaims(t)
	ks := keys(t)
	k := ks[ES256]
	good, err := Sign(c, k, "")
	if err != nil {
		t.Fatal(err)
	}
	raw := func(f func(m map[string]any)) string { return signRaw(t, edit(t, c, f), k, ES256, false) }
	h, p, s := split3(good)
	flip := func(seg string) string {
		b, _ := base64.RawURLEncoding.DecodeString(seg)
		b[len(b)/2] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + p + "."
	for _, tc := range []struct {
		name  string
		token string
		key   crypto.PublicKey
		want  error
	}{
		{"other key", good, ks[ES384].Public(), ErrSignature},
		{"other P-256 key", good, mustP256(t).Public(), ErrSignature},
		{"algorithm not the key's", signRaw(t, []byte(`{}`), ks[PS256], RS256, false), ks[ES256].Public(), ErrSignature},
		{"alg none", none, k.Public(), ErrSignature},
		{"payload changed", h + "." + flip(p) + "." + s, k.Public(), ErrSignature},
		{"signature changed", h + "." + p + "." + flip(s), k.Public(), ErrSignature},
		{"no signature", h + "." + p + ".", k.Public(), ErrSignature},
		{"JSON serialisation", `{"payload":"` + p + `","protected":"` + h + `","signature":"` + s + `"}`, k.Public(), ErrSignature},
		{"critical header", signRaw(t, []byte(`{}`), k, ES256, true), k.Public(), ErrSignature},
		{"too large", strings.Repeat("a", MaxTokenSize+1), k.Public(), ErrSignature},
		{"expired", good, k.Public(), ErrClaims},
		{"not JSON", signRaw(t, []byte("not json"), k, ES256, false), k.Public(), ErrClaims},
		{"two documents", signRaw(t, append(edit(t, c, func(map[string]any) {}), " {}"...), k, ES256, false), k.Public(), ErrClaims},
		{"pre-03 profile", raw(func(m map[string]any) { m["eat_profile"] = "tag:github.com,2023:veraison/ear" }), k.Public(), ErrClaims},
		{"dotted names", raw(func(m map[string]any) {
			a := submod(m)
			a["ear.status"], a["ear.trustworthiness-vector"] = a["ear_status"], a["ear_trustworthiness_vector"]
			delete(a, "ear_status")
			delete(a, "ear_trustworthiness_vector")
		}), k.Public(), ErrClaims},
		{"float iat", raw(func(m map[string]any) { m["iat"] = 1.7950000005e9 }), k.Public(), ErrClaims},
		{"no iat", raw(func(m map[string]any) { delete(m, "iat") }), k.Public(), ErrClaims},
		{"exp before iat", raw(func(m map[string]any) { m["exp"] = 100 }), k.Public(), ErrClaims},
		{"no verifier id", raw(func(m map[string]any) { delete(m, "ear_verifier_id") }), k.Public(), ErrClaims},
		{"no submods", raw(func(m map[string]any) { m["submods"] = map[string]any{} }), k.Public(), ErrClaims},
		{"null submod", raw(func(m map[string]any) { m["submods"] = map[string]any{"x": nil} }), k.Public(), ErrClaims},
		{"status not a tier", raw(func(m map[string]any) { submod(m)["ear_status"] = "fine" }), k.Public(), ErrClaims},
		{"status better than the vector", raw(func(m map[string]any) {
			submod(m)["ear_trustworthiness_vector"].(map[string]any)["executables"] = 96
		}), k.Public(), ErrClaims},
		{"affirming status, no claim", raw(func(m map[string]any) {
			submod(m)["ear_trustworthiness_vector"] = map[string]any{"executables": 0}
		}), k.Public(), ErrClaims},
		{"top status better than the submod", raw(func(m map[string]any) {
			submod(m)["ear_status"] = "warning"
			submod(m)["ear_trustworthiness_vector"].(map[string]any)["hardware"] = 32
		}), k.Public(), ErrClaims},
		{"claim out of range", raw(func(m map[string]any) {
			submod(m)["ear_trustworthiness_vector"].(map[string]any)["hardware"] = 200
		}), k.Public(), ErrClaims},
		{"empty policy ids", raw(func(m map[string]any) { submod(m)["ear_appraisal_policy_ids"] = []string{} }), k.Public(), ErrClaims},
		{"short nonce", raw(func(m map[string]any) { m["eat_nonce"] = "AAAA" }), k.Public(), ErrClaims},
		{"long evidence nonce", raw(func(m map[string]any) {
			submod(m)["eat_nonce"] = base64.RawURLEncoding.EncodeToString(make([]byte, 65))
		}), k.Public(), ErrClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := at
			if tc.name == "expired" {
				opts = VerifyOptions{Now: func() time.Time { return time.Unix(1795000000+3600, 0) }}
			}
			_, err := Verify(tc.token, tc.key, opts)
			if !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Verify(good, k.Public(), at); err != nil {
		t.Errorf("the good token: %v", err)
	}
	// A claims-set with an unknown claim verifies: receivers ignore them.
	if _, err := Verify(raw(func(m map[string]any) { m["x-unknown"] = []int{1}; submod(m)["y"] = "z" }), k.Public(), at); err != nil {
		t.Errorf("unknown claims: %v", err)
	}
}

func mustP256(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func split3(tok string) (h, p, s string) {
	h, rest, _ := strings.Cut(tok, ".")
	p, s, _ = strings.Cut(rest, ".")
	return h, p, s
}

// TestSignRefuses: Sign validates before signing and keeps algorithms to
// their keys.
func TestSignRefuses(t *testing.T) {
	c := sampleClaims(t)
	ks := keys(t)
	if _, err := Sign(c, ks[ES256], PS256); err == nil {
		t.Error("PS256 with an EC key")
	}
	if _, err := Sign(c, ks[ES256], ES384); err == nil {
		t.Error("ES384 with a P-256 key")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := Sign(c, small, ""); err == nil {
		t.Error("a 1024-bit RSA key")
	}
	bad := *c
	bad.Profile = "tag:github.com,2023:veraison/ear"
	if _, err := Sign(&bad, ks[ES256], ""); !errors.Is(err, ErrClaims) {
		t.Errorf("invalid claims: %v", err)
	}
	if _, err := FromVerdict(base(), Options{Nonce: []byte("short")}); err == nil {
		t.Error("a 5-byte nonce")
	}
}

// TestPolicyID: RFC 6920's ni URI of the bytes' SHA-256.
func TestPolicyID(t *testing.T) {
	// sha-256("") = e3b0c442…b855, in base64url.
	if got, want := PolicyID(nil), "ni:///sha-256;47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"; got != want {
		t.Errorf("%s, want %s", got, want)
	}
}
