package bootchain_test

import (
	"crypto"
	"crypto/sha1"
	"errors"
	"fmt"
	"slices"

	"github.com/bpfattest/bpfattest/bootchain"
)

// ExampleVerify verifies a small TPM 1.2-format log: a separator in each
// of PCRs 0 to 7, and shim's MokList measurement in PCR 14. The quoted
// values here are folded by hand; a verifier takes them from a quote it
// has checked. The agent's log on PCR 14 then starts from
// State.StartingValues().
func ExampleVerify() {
	sep := []byte{0, 0, 0, 0}
	mokList := sha1.Sum([]byte("the MokList variable's contents"))
	var log []byte
	for pcr := range uint32(8) {
		log = append(log, sha1Event(pcr, 0x00000004, sep)...) // EV_SEPARATOR
	}
	ipl := sha1Event(14, 0x0000000d, []byte("MokList\x00")) // EV_IPL, digest of the list
	copy(ipl[8:28], mokList[:])
	log = append(log, ipl...)

	extend := func(v, d []byte) []byte { h := sha1.Sum(slices.Concat(v, d)); return h[:] }
	zero := make([]byte, sha1.Size)
	sepDigest := sha1.Sum(sep)
	quoted := map[crypto.Hash]map[int][]byte{crypto.SHA1: {8: zero, 9: zero}}
	for pcr := range 8 {
		quoted[crypto.SHA1][pcr] = extend(zero, sepDigest[:])
	}

	st, err := bootchain.Verify(log, quoted, bootchain.Options{AllowSHA1: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("secure boot known %v, enabled %v\n", st.SecureBoot.Known, st.SecureBoot.Enabled)
	// The start is SHA-1(20 zero bytes ‖ SHA-1(the list)), the value
	// Python's hashlib gives too.
	fmt.Printf("pcr %d: %d firmware event(s), start %x\n", st.Agent.PCR, st.Agent.Events, st.StartingValues()[crypto.SHA1])

	// The same log against another boot's PCR 4 is refused.
	quoted[crypto.SHA1][4] = extend(quoted[crypto.SHA1][4], zero)
	_, err = bootchain.Verify(log, quoted, bootchain.Options{AllowSHA1: true})
	fmt.Println(errors.Is(err, bootchain.ReplayMismatch), err)
	// Output:
	// secure boot known true, enabled false
	// pcr 14: 1 firmware event(s), start 2a4bc5836948232de0ebb2f265478fa79604d5e6
	// true bootchain: pcr replay mismatch: sha1: pcr 4: the log's events do not fold to the quoted value (an event missing, added, reordered or changed)
}
