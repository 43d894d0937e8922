package attest

import (
	"slices"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
)

// History is what the records one verification replayed say happened,
// besides what the kernel holds at the time of the quote: the verdict on a
// host tells the whole story of the range, not only its end. Each list is
// in record order.
type History struct {
	// From and Next delimit the records the history covers.
	From, Next uint64
	// Loaded are the loads that stood in the range (whether or not their
	// programs are still in the kernel).
	Loaded []Program
	// Refused are loads the agent refused by its policy (measured, logged,
	// never handed to the kernel); Failed are loads the kernel or the
	// loader refused, that were aborted, whose programs disagreed with the
	// measurement (outcome mismatch) or that died with an agent that
	// crashed (Program.Died).
	Refused []Program
	Failed  []Program
	// Gone are measured loads whose every program left the kernel in the
	// range: they leave the current inventory and stay here.
	Gone []Program
	// Unmeasured are the programs no measured load created that the range
	// recorded: present at start, found by a sweep or by their load event,
	// or transient (came and went); Gone is set for those no longer in the
	// kernel at the quote.
	Unmeasured []Unmeasured
	// Transient are programs that came and went between two reads of the
	// kernel's program events: only their ids, tags and the processes
	// behind them are known.
	Transient []Transient
	// AgentStarts are agent processes taking over the log (a restart is a
	// start after the first), Recoveries what their start-up reconciliation
	// did, EventsLost the times the kernel dropped program events.
	AgentStarts []AgentStart
	Recoveries  []Recovery
	EventsLost  []EventsLost
	// Counted are the verified "refusals counted" records: load requests
	// the agent answered without a record each (refusals past a
	// requester's rate of refusal records, requests turned away before
	// they were measured). Refused and Failed hold only the loads recorded
	// one by one; CountedRefused and CountedThrottled add these up.
	Counted []Counted
	// PreviousBoot is set when the quote is from a later boot than the
	// verifier's State: the previous boot's records from its NextRecord on
	// were never verified.
	PreviousBoot *PreviousBoot
}

// Counted is one verified "refusals counted" record.
type Counted struct {
	Record   uint64
	Requests measure.Refusals
}

// CountedRefused and CountedThrottled add up the counted records: refusals
// by policy not recorded one by one, and requests turned away before they
// were measured.
func (h *History) CountedRefused() uint64 {
	var n uint64
	for _, c := range h.Counted {
		r, _ := c.Requests.Total()
		n += r
	}
	return n
}

// CountedThrottled: see CountedRefused.
func (h *History) CountedThrottled() uint64 {
	var n uint64
	for _, c := range h.Counted {
		_, t := c.Requests.Total()
		n += t
	}
	return n
}

// Transient is one program of a verified "transient programs" record.
type Transient struct {
	Record  uint64
	Program measure.TransientProgram
}

// AgentStart is one verified agent-start record.
type AgentStart struct {
	Record uint64
	Info   cel.AgentStartInfo
}

// EventsLost is one verified "events lost" record.
type EventsLost struct {
	Record uint64
	Count  uint64 // at least this many events were dropped
	TimeNS uint64 // CLOCK_BOOTTIME when the agent noticed
}

// PreviousBoot is the boot a State was for, when the next quote is from a
// later one.
type PreviousBoot struct {
	BootID     string
	ResetCount uint32
	// NextRecord is the first record of that boot's log the verifier never
	// verified: whatever it said is not part of any verdict.
	NextRecord uint64
}

// attempt files a load that put nothing in the kernel.
func (h *History) attempt(e *failedEntry) {
	if h == nil {
		return
	}
	p := e.program()
	if e.res.Outcome == measure.OutcomeRefused && !e.died {
		h.Refused = append(h.Refused, p)
		return
	}
	h.Failed = append(h.Failed, p)
}

// unmeasured files an unmeasured-program record.
func (h *History) unmeasured(u Unmeasured) {
	if h != nil {
		h.Unmeasured = append(h.Unmeasured, u)
	}
}

// unmeasuredGone marks the unmeasured program introduced by record rn as
// gone, if the history has it.
func (h *History) unmeasuredGone(rn uint64) {
	if h == nil {
		return
	}
	for i := range h.Unmeasured {
		if h.Unmeasured[i].Record == rn {
			h.Unmeasured[i].Gone = true
		}
	}
}

// clone deep-copies h.
func (h History) clone() History {
	c := h
	c.Loaded = clonePrograms(h.Loaded)
	c.Refused = clonePrograms(h.Refused)
	c.Failed = clonePrograms(h.Failed)
	c.Gone = clonePrograms(h.Gone)
	c.Unmeasured = cloneUnmeasured(h.Unmeasured)
	c.Transient = slices.Clone(h.Transient)
	c.AgentStarts = slices.Clone(h.AgentStarts)
	c.Recoveries = slices.Clone(h.Recoveries)
	c.EventsLost = slices.Clone(h.EventsLost)
	c.Counted = make([]Counted, len(h.Counted))
	for i, x := range h.Counted {
		c.Counted[i] = Counted{Record: x.Record, Requests: cloneRefusals(x.Requests)}
	}
	if h.Counted == nil {
		c.Counted = nil
	}
	if h.PreviousBoot != nil {
		p := *h.PreviousBoot
		c.PreviousBoot = &p
	}
	return c
}

// Restarts is the number of agent starts in the range after the first of
// the boot (record 1): each is an agent process that took over a log
// another had written.
func (h *History) Restarts() int {
	n := 0
	for _, a := range h.AgentStarts {
		if a.Record > 1 {
			n++
		}
	}
	return n
}

func cloneRefusals(r measure.Refusals) measure.Refusals {
	out := measure.Refusals{Requesters: slices.Clone(r.Requesters)}
	for i := range out.Requesters {
		out.Requesters[i].Verdicts = slices.Clone(out.Requesters[i].Verdicts)
	}
	return out
}
