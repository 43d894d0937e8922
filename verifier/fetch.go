package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// DefaultMaxLog is Limits.MaxLog's default: 64 MiB of records, more than
// 100,000 (a 100,000-record log takes about 60 MB), far more than a boot
// usually holds.
const DefaultMaxLog int64 = 64 << 20

// MaxLogLimit is the largest Limits.MaxLog accepted.
const MaxLogLimit int64 = 1 << 30

// Limits bound what a verifier buffers for one host. The zero value is the
// defaults.
type Limits struct {
	// MaxLog bounds the log bytes held for one quote: the records read
	// with Events and the ones the quote carries, together. A host whose
	// log from the verifier's record on is longer cannot be verified
	// within it (the error says so); 0 means DefaultMaxLog, and more than
	// MaxLogLimit means MaxLogLimit.
	MaxLog int64
}

func (l Limits) maxLog() int64 {
	if l.MaxLog <= 0 {
		return DefaultMaxLog
	}
	return min(l.MaxLog, MaxLogLimit)
}

// RecvLimit is the largest message a client of the agent needs to take
// within l: a quote with MaxLog bytes of log and the largest firmware log,
// plus room for the rest of the evidence. Dial options set it as the
// receive limit, so no single message is buffered past the bounds either.
func (l Limits) RecvLimit() int {
	return int(min(l.maxLog()+evidence.MaxFirmwareLogSize+1<<20, math.MaxInt32))
}

// fetchRounds bounds how often the agent may answer OUT_OF_RANGE again
// because its log grew faster than Events could read it.
const fetchRounds = 4

// FetchEvidence asks the agent for a quote over nonce that carries the log
// from record from on, and the machine's firmware event log when
// withFirmware is set. An agent whose records from there are more than
// one quote carries answers OUT_OF_RANGE: the records are then read with
// Events and the quote asked from the record after the last one read; the
// evidence joins the two and verifies exactly as one quote would (every
// record still has to replay to the quoted PCR values). At most
// lim.MaxLog bytes of log are held, whatever the agent sends: past it the
// fetch fails with ErrLogTooLong.
func FetchEvidence(ctx context.Context, client pb.AttestationServiceClient, nonce []byte, from uint64, withFirmware bool, lim Limits) (*pb.Evidence, error) {
	max := lim.maxLog()
	var log []byte
	next := from
	for range fetchRounds {
		ev, err := client.Quote(ctx, &pb.QuoteRequest{Nonce: nonce, FromRecord: next, IncludeFirmwareLog: withFirmware})
		if status.Code(err) != codes.OutOfRange {
			if err != nil {
				return nil, err
			}
			if n := int64(len(log)) + int64(len(ev.GetLog())); n > max {
				return nil, fmt.Errorf("quote: %w: the log from record %d is more than %d bytes", ErrLogTooLong, from, max)
			}
			if len(log) > 0 {
				ev.Log = append(log, ev.GetLog()...)
				ev.FromRecord = from
			}
			return ev, nil
		}
		if next, log, err = readEvents(ctx, client, from, next, log, max); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("quote: the agent's log outgrew %d rounds of reading it", fetchRounds)
}

// ErrLogTooLong: an agent's log from the verifier's record on is more than
// Limits.MaxLog bytes.
var ErrLogTooLong = errors.New("log longer than the verifier's limit")

// readEvents appends the records from record next to the end of the
// agent's log to log, checking they come in order (each record's number
// is the previous one's plus its number of events), and returns the
// number of the record after the last one read. log never grows past max bytes
// (its capacity included): a record that would take it there fails the
// read.
func readEvents(ctx context.Context, client pb.AttestationServiceClient, first, next uint64, log []byte, max int64) (uint64, []byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // a read stopped at the limit ends the stream
	stream, err := client.Events(ctx, &pb.EventsRequest{FromRecord: next})
	if err != nil {
		return 0, nil, err
	}
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return next, log, nil
		}
		if err != nil {
			return 0, nil, err
		}
		if e.GetRecnum() != next {
			return 0, nil, fmt.Errorf("events: record %d where %d was due", e.GetRecnum(), next)
		}
		rec := e.GetRecord()
		if int64(len(log))+int64(len(rec)) > max {
			return 0, nil, fmt.Errorf("events: %w: the log from record %d is more than %d bytes", ErrLogTooLong, first, max)
		}
		if len(log)+len(rec) > cap(log) {
			// Grow as append would, but never past the limit.
			grown := make([]byte, len(log), int(min(max, int64(2*cap(log)+len(rec)))))
			copy(grown, log)
			log = grown
		}
		// The next record's number is this one's plus its events (a
		// batch record carries several).
		r, n, err := cel.DecodeRecord(rec)
		if err != nil || n != len(rec) {
			return 0, nil, fmt.Errorf("events: record %d: not one record: %v", next, err)
		}
		rn, err := r.NextRecNum()
		if err != nil {
			return 0, nil, fmt.Errorf("events: record %d: %w", next, err)
		}
		log = append(log, rec...)
		next = rn
	}
}
