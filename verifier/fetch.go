package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// maxFetchedLog bounds the records a verifier reads through Events before
// its quote: far past any real boot's log, short of exhausting memory.
const maxFetchedLog = 1 << 30

// fetchRounds bounds how often the agent may answer OUT_OF_RANGE again
// because its log grew faster than Events could read it.
const fetchRounds = 4

// FetchEvidence asks the agent for a quote over nonce that carries the log
// from record from on, and the machine's firmware event log when
// withFirmware is set. An agent whose records from there are more than
// one quote carries answers OUT_OF_RANGE: the records are then read with
// Events and the quote asked from the record after the last one read; the
// evidence joins the two and verifies exactly as one quote would (every
// record still has to replay to the quoted PCR values).
func FetchEvidence(ctx context.Context, client pb.AttestationServiceClient, nonce []byte, from uint64, withFirmware bool) (*pb.Evidence, error) {
	var log []byte
	next := from
	for range fetchRounds {
		ev, err := client.Quote(ctx, &pb.QuoteRequest{Nonce: nonce, FromRecord: next, IncludeFirmwareLog: withFirmware})
		if status.Code(err) != codes.OutOfRange {
			if err != nil {
				return nil, err
			}
			if len(log) > 0 {
				ev.Log = append(log, ev.GetLog()...)
				ev.FromRecord = from
			}
			return ev, nil
		}
		if next, log, err = readEvents(ctx, client, next, log); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("quote: the agent's log outgrew %d rounds of reading it", fetchRounds)
}

// readEvents appends the records from record from to the end of the
// agent's log to log, checking they come in order, and returns the number
// of the record after the last one read.
func readEvents(ctx context.Context, client pb.AttestationServiceClient, from uint64, log []byte) (uint64, []byte, error) {
	stream, err := client.Events(ctx, &pb.EventsRequest{FromRecord: from})
	if err != nil {
		return 0, nil, err
	}
	next := from
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
		if len(log)+len(e.GetRecord()) > maxFetchedLog {
			return 0, nil, fmt.Errorf("events: the log from record %d is more than %d bytes", from, maxFetchedLog)
		}
		log = append(log, e.GetRecord()...)
		next++
	}
}
