package lskel

import "bytes"

// DataHashMatches reports whether the loader embeds a data hash and it
// equals SHA-256 of the data blob analysed.
func (l *Layout) DataHashMatches() bool {
	return l.EmbeddedDataHash != nil && bytes.Equal(l.EmbeddedDataHash, l.DataSHA256[:])
}
