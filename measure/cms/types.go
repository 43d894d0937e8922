package cms

import (
	"crypto/x509"
	"encoding/hex"
	"time"
)

// MaxSignatureSize is the largest signature the kernel takes
// (KMALLOC_MAX_CACHE_SIZE on x86-64; bpf_prog_verify_signature returns
// EINVAL above it).
const MaxSignatureSize = 8192

// SignedData is a parsed CMS (PKCS#7) SignedData, holding what the kernel's
// parser extracts. Byte slices alias the input of Parse.
type SignedData struct {
	Version     int    // SignedData.version: 1 or 3
	ContentType []byte // encapContentInfo.eContentType, DER content octets
	// Content is the encapsulated content when the message is not
	// detached. The kernel refuses such messages for BPF.
	Content      []byte
	HasContent   bool
	Certificates []*x509.Certificate // embedded certificates, in order
	Signers      []SignerInfo
	// Length is the number of bytes of the outer ContentInfo; bytes after
	// it (Trailing of them) are ignored, as the kernel does.
	Length   int
	Trailing int
	// BER is true when any length was indefinite or not minimal.
	BER bool
}

// SignerInfo is one signer of a SignedData.
type SignerInfo struct {
	Version int // 1 (issuer+serial) or 3 (subjectKeyIdentifier)
	// ID is the signer identifier in the kernel's key-ID form.
	ID SignerID
	// DigestAlgorithm and SignatureAlgorithm are the kernel's names
	// ("sha256"; "rsa", "ecdsa", "ecrdsa").
	DigestAlgorithm    string
	SignatureAlgorithm string
	// SignedAttrs are the authenticated attributes, nil when absent.
	SignedAttrs []Attribute
	// RawSignedAttrs is exactly what the kernel digests for the signature
	// when signed attributes are present: a SET tag (0x31) followed by the
	// [0] element's length octets and content as they were encoded.
	RawSignedAttrs []byte
	HasSignedAttrs bool
	// signedAttrsIndef records an indefinite-length [0] element; Hornet's
	// attribute lookup cannot re-read such a set.
	signedAttrsIndef bool
	MessageDigest    []byte    // messageDigest attribute value
	SigningTime      time.Time // signingTime attribute value, if HasSigningTime
	HasSigningTime   bool
	Signature        []byte // encryptedDigest / signature value
}

// Attribute is one signed attribute: its type and the raw encodings
// (tag, length, content) of each of its values.
type Attribute struct {
	OID    []byte // DER content octets of the attribute type
	Values []AttributeValue
}

// AttributeValue is one value of an attribute.
type AttributeValue struct {
	Tag     byte
	Content []byte
}

// SignerID is how a SignerInfo names its key. The kernel builds a key ID
// from the raw content octets: serial || issuer for version 1, the
// subjectKeyIdentifier for version 3.
type SignerID struct {
	SKID   []byte // set for version 3
	Serial []byte // INTEGER content octets, version 1
	Issuer []byte // Name SEQUENCE content octets, version 1
}

// KeyID returns the kernel's asymmetric key ID for this signer.
func (s SignerID) KeyID() []byte {
	if s.SKID != nil {
		return append([]byte(nil), s.SKID...)
	}
	id := make([]byte, 0, len(s.Serial)+len(s.Issuer))
	id = append(id, s.Serial...)
	return append(id, s.Issuer...)
}

// String returns "skid:<hex>" or "issuer+serial:<serial hex>/<issuer hex>".
func (s SignerID) String() string {
	if s.SKID != nil {
		return "skid:" + hex.EncodeToString(s.SKID)
	}
	return "issuer+serial:" + hex.EncodeToString(s.Serial) + "/" + hex.EncodeToString(s.Issuer)
}
