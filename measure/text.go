package measure

import "fmt"

// unmarshalEnum sets *dst to the value among candidates whose String equals
// text, so the enums' JSON forms read back.
func unmarshalEnum[T interface {
	~uint8
	String() string
}](dst *T, text []byte, what string, candidates ...T) error {
	for _, c := range candidates {
		if c.String() == string(text) {
			*dst = c
			return nil
		}
	}
	return fmt.Errorf("%s: unknown value %q", what, text)
}

// UnmarshalText reads the name MarshalText writes.
func (s *Scheme) UnmarshalText(b []byte) error {
	return unmarshalEnum(s, b, "scheme", SchemeUnsigned, SchemeKernel, SchemeHornet)
}

// UnmarshalText reads the name MarshalText writes.
func (l *Link) UnmarshalText(b []byte) error {
	return unmarshalEnum(l, b, "link", LinkAbsent, LinkHolds, LinkBroken, LinkKernelBound)
}

// UnmarshalText reads the name MarshalText writes.
func (k *KernelCheck) UnmarshalText(b []byte) error {
	return unmarshalEnum(k, b, "kernel check", KernelCheckUnknown, KernelCheckUnavailable, KernelCheckVerified, KernelCheckNotSubmitted)
}

// UnmarshalText reads the name MarshalText writes.
func (o *Outcome) UnmarshalText(b []byte) error {
	return unmarshalEnum(o, b, "outcome", OutcomeLoaded, OutcomeRefused, OutcomeKernelError, OutcomeLoaderError, OutcomeAborted, OutcomeMismatch)
}

// UnmarshalText reads the name MarshalText writes.
func (d *Discovery) UnmarshalText(b []byte) error {
	return unmarshalEnum(d, b, "discovery", DiscoveredAtStart, DiscoveredObserved, DiscoveredEvent,
		DiscoveredAfterLoss, DiscoveredContradiction)
}
