package agent

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/tpm"
)

// Quotes are coalesced: a TPM quote costs tens to hundreds of milliseconds
// on real TPMs, so requests that arrive while one is being made, or within
// QuoteWindow of the first of a batch, share the next one, up to
// MaxQuoteBatch requests a quote (MaxQuoteBatch 1: a quote per request). The qualifying
// data is the root of a Merkle tree over the batch's nonces (evidence.Batch);
// each caller gets its own inclusion proof. A batch runs in its own
// goroutine, so a caller that gives up does not cancel the others'.
//
// What quotes cost is bounded by what they take of the TPM, not by who
// asks: after a TPM quote, the next one starts no sooner than d/QuoteTPMShare
// after it began, d the recent quotes' TPM time (spent). Requests that arrive in the
// meantime join the pending batch, so any number of requests, from one
// verifier or many, cost at most QuoteTPMShare of the TPM's time, and a
// request waits for at most the quote running, the rest after it, and its
// own (a batch holds evidence.MaxBatch requests, more than the remote
// service admits at once). Within the quotes' share, tpmSched still takes
// turns with the log's extends, so a load waits for one quote at most.

// quoteReq is one caller's part of a batch.
type quoteReq struct {
	nonce []byte
	from  uint64
}

// quoteBatch is one TPM quote and the callers that share it.
type quoteBatch struct {
	reqs []quoteReq
	done chan struct{} // closed when the fields below are set

	err    error
	quote  *tpm.Quote
	proofs *evidence.Batch
	first  uint64 // the lowest from of the batch's requests
	// slice is the log the journal handed out, from the record holding
	// first to the end; it finds the record holding a caller's from,
	// batch records included.
	slice journal.Slice
}

// quoter queues batches and runs them one at a time.
type quoter struct {
	a       *Agent
	mu      sync.Mutex
	pending []*quoteBatch
	busy    bool
	// next is when the next TPM quote may start (the TPM time share);
	// written by the one runner at a time, under mu.
	next time.Time
	// avg is the recent quotes' TPM time, each new quote weighing a
	// quarter; under mu.
	avg time.Duration
}

func (q *quoter) init(a *Agent) { q.a = a }

// join adds a request to the open batch, starting the runner if idle.
func (q *quoter) join(r quoteReq) (*quoteBatch, int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.pending)
	if n == 0 || len(q.pending[n-1].reqs) >= q.a.set.MaxQuoteBatch {
		q.pending = append(q.pending, &quoteBatch{done: make(chan struct{})})
		n++
	}
	b := q.pending[n-1]
	b.reqs = append(b.reqs, r)
	idx := len(b.reqs) - 1
	if !q.busy {
		if err := q.a.spawn(q.run); err != nil {
			b.reqs = b.reqs[:idx]
			return nil, 0, err
		}
		q.busy = true
	}
	return b, idx, nil
}

// run takes batches until none is pending. Before each it waits QuoteWindow
// for more callers to join, and at least until the quotes' share of the
// TPM's time allows the next quote.
func (q *quoter) run() {
	for {
		q.mu.Lock()
		w := max(q.a.set.QuoteWindow, time.Until(q.next))
		q.mu.Unlock()
		if w > 0 {
			t := time.NewTimer(w)
			select {
			case <-t.C:
			case <-q.a.done:
				t.Stop()
			}
		}
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		b := q.a.quoteNext()
		close(b.done)
	}
}

// take removes the first pending batch: the requests that joined until
// now. Only the runner takes, and only when one is pending.
func (q *quoter) take() *quoteBatch {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.pending[0]
	q.pending = q.pending[1:]
	return b
}

// QuoteTPMShare is the share of the TPM's time quotes may take
// (Config.QuoteTPMShare, its default applied).
func (a *Agent) QuoteTPMShare() float64 { return a.set.QuoteTPMShare }

// spent records a TPM quote that began at start and held the TPM for d:
// the next may begin avg/QuoteTPMShare after start, avg the recent
// quotes' TPM time with d weighing a quarter. Quotes that all take d keep
// to the share exactly (avg is d); one quote slowed by the host (a TPM
// or a simulator starved of CPU) holds the next back by a quarter of its
// excess over the average, not by all of it again.
func (q *quoter) spent(start time.Time, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.avg == 0 {
		q.avg = d
	} else {
		q.avg += (d - q.avg) / 4
	}
	q.next = start.Add(time.Duration(float64(q.avg) / q.a.set.QuoteTPMShare))
}

// Quote answers a verifier's nonce with TPM evidence: it first sweeps the
// kernel's programs (so the log accounts for everything loaded up to now),
// then, holding the log still, quotes the agent's PCR and the boot PCRs
// (Config.BootPCRs) in every active bank in one TPM quote, with qualifying
// data derived from the nonce (shared with concurrent callers, see
// evidence.Batch). The evidence carries the log's records from fromRecord
// to the end, which replay to the agent PCR's quoted values; the firmware
// log that explains the boot PCRs is FirmwareLog, for the caller to attach
// when the verifier asks for it.
//
// Errors: ErrNonce (bad nonce), ErrInvalid (fromRecord past the end of the
// log), ErrLogTooLarge (the records from fromRecord on take more than
// Config.MaxQuoteLog bytes), ErrUnavailable (the TPM or the log failed),
// ErrClosed, or ctx's error when the caller stops waiting.
func (a *Agent) Quote(ctx context.Context, nonce []byte, fromRecord uint64) (*evidence.Evidence, error) {
	if err := evidence.CheckNonce(nonce); err != nil {
		return nil, fmt.Errorf("agent/quote: %w: %w", ErrNonce, err)
	}
	if err := a.usable(); err != nil {
		return nil, err
	}
	// The journal's count, not the records metric: that is stored after
	// the append returns, so a quote may already carry records it does
	// not count yet.
	if n := a.jr.Len(); fromRecord > n {
		return nil, fmt.Errorf("agent/quote: %w: from record %d past the end (%d records)", ErrInvalid, fromRecord, n)
	}
	if size := a.jr.SizeFrom(fromRecord); size > a.set.MaxQuoteLog {
		return nil, fmt.Errorf("agent/quote: %w: the records from %d take %d bytes, more than %d; read them with Events and quote from a later record",
			ErrLogTooLarge, fromRecord, size, a.set.MaxQuoteLog)
	}
	b, idx, err := a.quotes.join(quoteReq{nonce: bytes.Clone(nonce), from: fromRecord})
	if err != nil {
		return nil, err
	}
	a.metrics.quoteRequests.Add(1)
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("agent/quote: %w", ctx.Err())
	}
	if b.err != nil {
		return nil, b.err
	}
	return b.answer(a, idx), nil
}

// quoteNext sweeps, then takes the first pending batch and quotes it
// under the journal's snapshot, and returns it answered (or failed).
// Requests that join while the sweep runs are in it: only those that come
// once its quote has begun wait for the next.
func (a *Agent) quoteNext() *quoteBatch {
	start := time.Now()
	err := a.usable()
	if err == nil {
		if err = a.sweep(context.Background(), ownerQuote); err != nil {
			err = fmt.Errorf("agent/quote: %w", err)
		}
	}
	// Every request answered until now is in the log before the quote.
	if err == nil {
		if err = a.flushRefusals(context.Background()); err != nil {
			err = fmt.Errorf("agent/quote: %w", err)
		}
	}
	b := a.quotes.take()
	if err != nil {
		b.err = err
		return b
	}
	a.quoteBatch(b, start)
	return b
}

// quoteBatch quotes b under the journal's snapshot; start is when its
// sweep began.
func (a *Agent) quoteBatch(b *quoteBatch, start time.Time) {
	nonces := make([][]byte, len(b.reqs))
	b.first = b.reqs[0].from
	for i, r := range b.reqs {
		nonces[i] = r.nonce
		b.first = min(b.first, r.from)
	}
	proofs, err := evidence.NewBatch(nonces)
	if err != nil {
		b.err = fmt.Errorf("agent/quote: %w: %w", ErrNonce, err)
		return
	}
	b.proofs = proofs
	banks := quoteBanks(a.dev.Banks())
	err = a.jr.SnapshotSlice(b.first, func(s journal.Slice, pcr map[crypto.Hash][]byte) error {
		var q *tpm.Quote
		if err := a.sched.do(context.Background(), tpmQuote, func() error {
			start := time.Now()
			defer func() { a.quotes.spent(start, time.Since(start)) }()
			var err error
			q, err = a.dev.Quote(a.ak, proofs.QualifyingData(), a.set.quoted, banks)
			return err
		}); err != nil {
			return err
		}
		for _, v := range q.PCRs {
			if v.Index == a.set.PCR && !bytes.Equal(v.Digest, pcr[v.Bank]) {
				return fmt.Errorf("quoted %v pcr %d differs from the log's", v.Bank, v.Index)
			}
		}
		b.quote, b.slice = q, s
		return nil
	})
	if err != nil {
		b.err = fmt.Errorf("agent/quote: %w: %w", ErrUnavailable, err)
		return
	}
	a.metrics.quotes.Add(1)
	a.metrics.quoteBatch.observeCount(len(b.reqs))
	a.metrics.quoteTime.observe(time.Since(start))
}

// answer is caller idx's evidence.
func (b *quoteBatch) answer(a *Agent, idx int) *evidence.Evidence {
	// A from inside a batch record gets the log from that record on, and
	// says so: FromRecord is the first record's number.
	off, from, ok := b.slice.Locate(b.reqs[idx].from)
	if !ok {
		// Every from is at or past b.first and at most the log's end.
		off, from = len(b.slice.Log), b.slice.Next
	}
	log := b.slice.Log[off:]
	if len(b.reqs) > 1 {
		// Callers must not share a buffer; a lone caller takes the batch's.
		log = bytes.Clone(log)
	}
	ev := &evidence.Evidence{
		AKPublic:      slices.Clone(a.ak.PublicArea()),
		Attest:        slices.Clone(b.quote.Attest),
		Signature:     slices.Clone(b.quote.Signature),
		PCR:           a.set.PCR,
		Log:           log,
		FromRecord:    from,
		Proof:         b.proofs.Proof(idx),
		EKCertificate: slices.Clone(a.ekCert),
	}
	for _, v := range b.quote.PCRs {
		ev.PCRs = append(ev.PCRs, evidence.PCRValue{Bank: v.Bank, Index: v.Index, Digest: slices.Clone(v.Digest)})
	}
	return ev
}

// quoteBanks returns the banks a quote covers: every active bank except
// SHA-1 when a stronger one is active. SHA-1 is still extended (the bank
// must not be left for anyone to forge), but verifiers refuse to rely on it,
// so quoting it would only make every default verification fail.
func quoteBanks(active []crypto.Hash) []crypto.Hash {
	var out []crypto.Hash
	for _, b := range active {
		if b != crypto.SHA1 {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return active
	}
	return out
}
