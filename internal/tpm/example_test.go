//go:build cgo

package tpm_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"log"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// Example measures one event into PCR 14 of the in-process simulator and
// quotes it.
func Example() {
	d, err := tpm.Open(context.Background(), "sim")
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	fmt.Println("banks:", d.Banks())

	content := []byte("measured content")
	digests := map[crypto.Hash][]byte{}
	for _, h := range d.Banks() {
		w := h.New()
		w.Write(content)
		digests[h] = w.Sum(nil)
	}
	if err := d.Extend(14, digests); err != nil {
		log.Fatal(err)
	}

	ak, err := d.LoadOrCreateAK(tpm.AKOptions{}) // ECC P-256, not stored
	if err != nil {
		log.Fatal(err)
	}
	nonce := sha256.Sum256([]byte("verifier nonce"))
	q, err := d.Quote(ak, nonce[:], []int{14}, []crypto.Hash{crypto.SHA256})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("quoted %v PCR %d, %d-byte TPMS_ATTEST\n", q.PCRs[0].Bank, q.PCRs[0].Index, len(q.Attest))
	// Output:
	// banks: [SHA-1 SHA-256 SHA-384 SHA-512]
	// quoted SHA-256 PCR 14, 145-byte TPMS_ATTEST
}
