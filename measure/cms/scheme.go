package cms

// IsHornet reports whether sig is a CMS SignedData one of whose signers
// carries Hornet's map-hash signed attribute, read the way Hornet reads it.
// A signature that does not parse is not Hornet (Verify reports it).
func IsHornet(sig []byte) bool {
	sd, err := Parse(sig)
	if err != nil {
		return false
	}
	signers := make([]*SignerInfo, len(sd.Signers))
	for i := range sd.Signers {
		signers[i] = &sd.Signers[i]
	}
	_, ok := hornetAttr(signers)
	return ok
}
