package cms

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Hornet limits (security/hornet, v7).
const (
	MaxHornetMaps  = 63  // entries in the map-hash attribute
	MaxHornetIndex = 127 // an index must fit one INTEGER content octet
)

// MapHash is one entry of Hornet's signed map-hash attribute: the SHA-256 of
// the frozen map passed at fd_array[Index], or an empty SHA256 meaning the
// map is not checked.
type MapHash struct {
	Index  uint8
	SHA256 []byte // 32 bytes, or empty: skip
}

// String returns "<index>:<hex>" or "<index>:skip".
func (m MapHash) String() string {
	if len(m.SHA256) == 0 {
		return fmt.Sprintf("%d:skip", m.Index)
	}
	return fmt.Sprintf("%d:%s", m.Index, hex.EncodeToString(m.SHA256))
}

// VerifyHornet checks a signature the way the Hornet LSM does on top of the
// kernel scheme: Verify first (any verdict other than OK is returned as
// is), then the map-hash attribute of the verified signer is decoded and
// every non-empty hash is compared with SHA-256 of maps[index], where maps
// are the contents of the maps passed in fd_array order (for an array map:
// every element padded to 8 bytes, all max_entries of them, as the kernel
// hashes a frozen map).
//
// No map-hash attribute gives PARTIALSIG; an attribute that does not decode
// gives BADSIG; an index with no map gives FAULT; a hash that does not match
// gives UNEXPECTED.
func VerifyHornet(sig, content []byte, maps [][]byte, trust *TrustStore) Result {
	r, signers := verify(sig, content, trust)
	if r.Verdict != VerdictOK {
		return r
	}
	val, ok := hornetAttr(signers)
	if !ok {
		r.Verdict = VerdictPartialSig
		r.Reason = "signature good but carries no Hornet map-hash attribute"
		return r
	}
	hashes, err := decodeHornetData(val)
	if err != nil {
		r.Verdict, r.Errno, r.Reason = VerdictBadSig, "EBADMSG", err.Error()
		return r
	}
	r.MapHashes = hashes
	for _, h := range hashes {
		if len(h.SHA256) == 0 {
			continue
		}
		if int(h.Index) >= len(maps) || maps[h.Index] == nil {
			r.Verdict, r.Reason = VerdictFault, fmt.Sprintf("no map at fd_array index %d", h.Index)
			return r
		}
		got := sha256.Sum256(maps[h.Index])
		if !bytes.Equal(got[:], h.SHA256) {
			r.Verdict, r.Reason = VerdictUnexpected, fmt.Sprintf("map %d hash %x, signed %x", h.Index, got, h.SHA256)
			return r
		}
	}
	return r
}

// hornetAttr mirrors pkcs7_get_authattr: in the first verified signer that
// has it, the content of the last value of the last attribute with Hornet's
// OID. A signer whose signed attributes used an indefinite length cannot be
// re-read by the kernel (the saved length stops before the end-of-contents)
// and yields nothing.
func hornetAttr(signers []*SignerInfo) ([]byte, bool) {
	for _, si := range signers {
		if !si.HasSignedAttrs || si.signedAttrsIndef {
			continue
		}
		var val []byte
		found := false
		for _, a := range si.SignedAttrs {
			if bytes.Equal(a.OID, oidHornetData) && len(a.Values) > 0 {
				val, found = a.Values[len(a.Values)-1].Content, true
			}
		}
		if found {
			return val, true
		}
	}
	return nil, false
}

// decodeHornetData decodes HornetData ::= SET OF Map, Map ::= SEQUENCE {
// index INTEGER, sha OCTET STRING } (security/hornet/hornet.asn1) with the
// kernel decoder's rules: one index octet (0..127), a 32-byte or empty
// hash, at most 63 entries; bytes after the SET are ignored.
func decodeHornetData(b []byte) ([]MapHash, error) {
	var ber bool
	c := cursor{data: b, end: len(b), ber: &ber}
	var out []MapHash
	f, err := c.enter(tagSet, "HornetData")
	if err != nil {
		return nil, fmt.Errorf("hornet/decode: %w", err)
	}
	for {
		m, err := c.enter(tagSequence, "HornetData.Map")
		if err != nil {
			return nil, fmt.Errorf("hornet/decode: %w", err)
		}
		idx, err := c.leaf(tagInteger, "HornetData.Map.index")
		if err != nil {
			return nil, fmt.Errorf("hornet/decode: %w", err)
		}
		if len(idx.content) != 1 || idx.content[0] > MaxHornetIndex {
			return nil, fmt.Errorf("hornet/decode: map index %x is not one octet in 0..127", idx.content)
		}
		sha, err := c.leaf(tagOctetString, "HornetData.Map.sha")
		if err != nil {
			return nil, fmt.Errorf("hornet/decode: %w", err)
		}
		if len(sha.content) != sha256.Size && len(sha.content) != 0 {
			return nil, fmt.Errorf("hornet/decode: map %d hash is %d bytes", idx.content[0], len(sha.content))
		}
		if err := c.leave(m, "HornetData.Map"); err != nil {
			return nil, fmt.Errorf("hornet/decode: %w", err)
		}
		out = append(out, MapHash{Index: idx.content[0], SHA256: sha.content})
		if len(out) > MaxHornetMaps {
			return nil, fmt.Errorf("hornet/decode: more than %d map hashes", MaxHornetMaps)
		}
		more, err := c.more(f, "HornetData")
		if err != nil {
			return nil, fmt.Errorf("hornet/decode: %w", err)
		}
		if !more {
			break
		}
	}
	if err := c.leave(f, "HornetData"); err != nil {
		return nil, fmt.Errorf("hornet/decode: %w", err)
	}
	return out, nil
}
