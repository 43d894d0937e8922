package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Handle ranges by their first handle (TPM 2.0 Part 2 §7.2, TPM_HT).
const (
	firstTransient     = 0x80000000
	firstHMACSession   = 0x02000000
	firstPolicySession = 0x03000000
)

// handles lists the handles in the range that starts at first
// (TPM2_GetCapability, TPM_CAP_HANDLES), following moreData.
func handles(t transport.TPM, first uint32) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := first
	for {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      next,
			PropertyCount: 64,
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("handles/get %#x: %w", first, err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("handles/get %#x: %w", first, err)
		}
		for _, h := range hs.Handle {
			if uint32(h)>>24 != first>>24 {
				return out, nil // past the range
			}
			out = append(out, h)
		}
		if !rsp.MoreData || len(hs.Handle) == 0 {
			return out, nil
		}
		next = uint32(hs.Handle[len(hs.Handle)-1]) + 1
	}
}

// flushAll flushes every transient object and loaded session. It is used
// only at open on TPMs without a resource manager, where such handles are
// leftovers of earlier clients and would otherwise fill the few slots.
func flushAll(t transport.TPM) error {
	var errs []error
	for _, first := range []uint32{firstTransient, firstHMACSession, firstPolicySession} {
		hs, err := handles(t, first)
		if err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		for _, h := range hs {
			errs = append(errs, flush(t, h))
		}
	}
	return errors.Join(errs...)
}

// flush flushes one transient object or session.
func flush(t transport.TPM, h tpm2.TPMHandle) error {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err != nil {
		return fmt.Errorf("flush %#x: %w", uint32(h), err)
	}
	return nil
}
