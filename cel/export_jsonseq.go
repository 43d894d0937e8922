package cel

import (
	"encoding/json"
	"fmt"
	"io"
)

// recordSeparator starts each JSON text of a JSON text sequence (RFC 7464).
const recordSeparator = 0x1E

// WriteJSONSeq writes recs as a JSON text sequence (RFC 7464,
// application/json-seq): for each record, an ASCII record separator
// (0x1E), the record's CEL-JSON object as WriteJSON writes it, and a line
// feed. It is the framing systemd's tpm2-measure.log uses, so tools that
// read that log read this one record by record, and a log cut short
// loses only its last, incomplete record.
func WriteJSONSeq(w io.Writer, recs []Record, render JSONRenderer) error {
	for i := range recs {
		b, err := json.Marshal(jsonRecordOf(&recs[i], render))
		if err != nil {
			return fmt.Errorf("cel: write json-seq record %d: %w", i, err)
		}
		buf := make([]byte, 0, len(b)+2)
		buf = append(buf, recordSeparator)
		buf = append(buf, b...)
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("cel: write json-seq: %w", err)
		}
	}
	return nil
}
