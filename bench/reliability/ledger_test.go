package reliability

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// ledger is a verifier's own account of one boot's log, built only from
// quotes: the records seen so far and their replay, the PCR values after
// each record, and what clients were told (acknowledged loads and quotes)
// that the log must still hold. It is safe for concurrent use.
type ledger struct {
	mu sync.Mutex
	n  uint64 // events ingested: the number the next record must carry
	rp *cel.Replayer
	// after[e]: the replay after the record whose events end before event
	// e (a batch record carries several events, docs/crash-safety.md §7).
	after map[uint64]map[crypto.Hash][]byte

	measurements map[uint64][32]byte // recnum → SHA-256 of the content
	results      map[uint64]uint64   // measurement recnum → its result's recnum

	loads  []loadAck
	quotes []quoteAck

	stats ledgerStats
}

type ledgerStats struct {
	Records, Measurements, Results, Aborted   int
	Events, Batches                           int // events; batch records among Records
	AgentStarts, RolledForward, DiscardedTail int
	LoadsAcked, QuotesAcked                   int
	// Refusals: results "refused" (recorded one by one), and the
	// refused and throttled loads "refusals counted" records count.
	Refused                          int
	CountedRefused, CountedThrottled uint64
	// Observed: records of the observer (programs loaded by others,
	// unloaded, transient, events lost): on a shared kernel, other
	// processes' BPF activity, each one more extend.
	Observed int
}

// loadAck is a load a client was told succeeded.
type loadAck struct{ measurement, result uint64 }

// quoteAck is a quote a client received: the log held end records and the
// PCR had these values.
type quoteAck struct {
	end  uint64
	pcrs map[crypto.Hash][]byte
}

func newLedger() *ledger {
	return &ledger{measurements: map[uint64][32]byte{}, results: map[uint64]uint64{}, after: map[uint64]map[crypto.Hash][]byte{}}
}

// check fails when the log holds more measurements than load requests were
// sent (issued counts them, in flight or not): a record written twice.
func (l *ledger) check(issued int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if int64(l.stats.Measurements) > issued {
		return fmt.Errorf("duplicated: %d measurements in the log, %d load requests sent", l.stats.Measurements, issued)
	}
	return nil
}

// Len is the number of events ingested: where the next quote should start.
func (l *ledger) Len() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// ackLoad notes a successful load response.
func (l *ledger) ackLoad(r *pb.LoadResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loads = append(l.loads, loadAck{r.GetMeasurementRecord(), r.GetResultRecord()})
	l.stats.LoadsAcked++
}

// ackQuote notes evidence a client received. It fails only when the
// evidence does not decode.
func (l *ledger) ackQuote(ev *pb.Evidence) error {
	recs, err := cel.Decode(ev.GetLog())
	if err != nil {
		return fmt.Errorf("quote log: %w", err)
	}
	pcrs, err := quotedPCRs(ev)
	if err != nil {
		return err
	}
	end := ev.GetFromRecord()
	if len(recs) > 0 {
		if end, err = recs[len(recs)-1].NextRecNum(); err != nil {
			return fmt.Errorf("quote log: %w", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.quotes = append(l.quotes, quoteAck{end: end, pcrs: pcrs})
	l.stats.QuotesAcked++
	return nil
}

// quotedPCRs returns the evidence's PCR values by bank, after checking that
// the signed attestation's PCR digest covers them (TPM 2.0 Part 2,
// TPMS_QUOTE_INFO: the digest of the selected PCRs, concatenated, with
// the AK's name algorithm, SHA-256 here).
func quotedPCRs(ev *pb.Evidence) (map[crypto.Hash][]byte, error) {
	pcrs := map[crypto.Hash][]byte{}
	var concat []byte
	for _, v := range ev.GetPcrs() {
		h, ok := cel.HashForAlg(uint16(v.GetHashAlg()))
		if !ok {
			return nil, fmt.Errorf("quote: unknown bank %#x", v.GetHashAlg())
		}
		if v.GetIndex() == ev.GetPcr() { // the boot PCRs are quoted too
			pcrs[h] = v.GetDigest()
		}
		concat = append(concat, v.GetDigest()...)
	}
	at, err := tpm2.Unmarshal[tpm2.TPMSAttest](ev.GetAttest())
	if err != nil {
		return nil, fmt.Errorf("quote: attest: %w", err)
	}
	qi, err := at.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("quote: not a quote: %w", err)
	}
	if d := sha256.Sum256(concat); !bytes.Equal(qi.PCRDigest.Buffer, d[:]) {
		return nil, fmt.Errorf("quote: signed pcr digest %x does not cover the pcr values (%x)", qi.PCRDigest.Buffer, d)
	}
	return pcrs, nil
}

// ingest adds the records of evidence that starts at l.Len() and checks
// that the log replays to the quoted PCR values, that record numbers run
// on without a gap or a repeat (each record's is the previous one's plus
// its number of events), and that every result names a measurement
// with no other result. (Two loads by one client within the 10 ms
// resolution of the boot time measure to identical content; they are
// told apart by record number, so content is not required to be unique.)
func (l *ledger) ingest(ev *pb.Evidence) error {
	recs, err := cel.Decode(ev.GetLog())
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	pcrs, err := quotedPCRs(ev)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ev.GetFromRecord() != l.n {
		return fmt.Errorf("ingest: evidence from record %d, ledger at %d", ev.GetFromRecord(), l.n)
	}
	for i := range recs {
		if err := l.add(&recs[i]); err != nil {
			return fmt.Errorf("ingest: record %d: %w", recs[i].RecNum, err)
		}
	}
	if len(pcrs) == 0 {
		return fmt.Errorf("ingest: a quote without pcr values")
	}
	for h, v := range pcrs {
		if got := l.rp.Values()[h]; !bytes.Equal(got, v) {
			return fmt.Errorf("divergence: %d records replay to %v %x, the quote says %x", l.n, h, got, v)
		}
	}
	return nil
}

func (l *ledger) add(r *cel.Record) error {
	if r.RecNum != l.n {
		return fmt.Errorf("record number %d, want %d", r.RecNum, l.n)
	}
	if l.n == 0 {
		boot, err := cel.ParseBootInfo(r.Content)
		if err != nil {
			return fmt.Errorf("boot header: %w", err)
		}
		if l.rp, err = cel.NewReplayer(boot.Start); err != nil {
			return err
		}
	}
	if err := l.rp.Add(r); err != nil {
		return err
	}
	next, err := r.NextRecNum()
	if err != nil {
		return err
	}
	l.n = next
	l.after[next] = l.rp.Values()
	l.stats.Records++
	if r.Type == cel.Batch {
		l.stats.Batches++
	}
	// Events, not records: a batch record's events one by one.
	return r.EachEvent(l.addEvent)
}

func (l *ledger) addEvent(r *cel.Event) error {
	l.stats.Events++
	sum := sha256.Sum256(r.Content)
	switch r.Type {
	case cel.BPFMeasurement:
		l.measurements[r.RecNum] = sum
		l.stats.Measurements++
	case cel.AgentStart:
		l.stats.AgentStarts++
	case cel.Recovery:
		ri, err := cel.ParseRecoveryInfo(r.Content)
		if err != nil {
			return err
		}
		switch ri.Action {
		case cel.RolledForward:
			l.stats.RolledForward++
		case cel.DiscardedTail:
			l.stats.DiscardedTail++
		}
	case cel.BPFLoadResult:
		res, err := measure.ParseLoadResult(r.Content)
		if err != nil {
			return err
		}
		m, ok := l.measurements[res.MeasurementRecord]
		if !ok {
			return fmt.Errorf("result for record %d, which is no measurement", res.MeasurementRecord)
		}
		if m != res.MeasurementSHA256 {
			return fmt.Errorf("result names measurement %d with another digest", res.MeasurementRecord)
		}
		if prev, dup := l.results[res.MeasurementRecord]; dup {
			return fmt.Errorf("second result for measurement %d (first: %d)", res.MeasurementRecord, prev)
		}
		l.results[res.MeasurementRecord] = r.RecNum
		l.stats.Results++
		switch res.Outcome {
		case measure.OutcomeAborted:
			l.stats.Aborted++
		case measure.OutcomeRefused:
			l.stats.Refused++
		}
	case cel.BPFUnmeasured, cel.BPFUnloaded, cel.BPFTransient, cel.BPFEventsLost:
		l.stats.Observed++
	case cel.BPFRefusals:
		rf, err := measure.ParseRefusals(r.Content)
		if err != nil {
			return err
		}
		refused, throttled := rf.Total()
		l.stats.CountedRefused += refused
		l.stats.CountedThrottled += throttled
	}
	return nil
}

// settle checks every acknowledgement the ingested log now covers and
// forgets it; it returns how many are still beyond the ledger.
func (l *ledger) settle() (pending int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var loads []loadAck
	for _, a := range l.loads {
		switch {
		case a.result >= l.n:
			loads = append(loads, a)
		case l.results[a.measurement] != a.result:
			return 0, fmt.Errorf("lost: acknowledged load (measurement %d, result %d) is not in the log", a.measurement, a.result)
		}
	}
	var quotes []quoteAck
	for _, q := range l.quotes {
		if q.end > l.n {
			quotes = append(quotes, q)
			continue
		}
		if q.end == 0 {
			return 0, fmt.Errorf("an acknowledged quote covered no records")
		}
		after, ok := l.after[q.end]
		if !ok {
			return 0, fmt.Errorf("lost: an acknowledged quote of %d events ends inside a record of the log", q.end)
		}
		for h, v := range q.pcrs {
			if !bytes.Equal(after[h], v) {
				return 0, fmt.Errorf("lost: an acknowledged quote of %d events (%v %x) is not a prefix of the log (%x)", q.end, h, v, after[h])
			}
		}
	}
	l.loads, l.quotes = loads, quotes
	return len(loads) + len(quotes), nil
}

// unresolved returns the measurements that have no result.
func (l *ledger) unresolved() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for m := range l.measurements {
		if _, ok := l.results[m]; !ok {
			out = append(out, m)
		}
	}
	return out
}

func (l *ledger) Stats() ledgerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}
