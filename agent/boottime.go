package agent

import (
	"os"
	"strconv"
	"strings"
)

// bootTimeNS returns the time since boot, including suspend (CLOCK_BOOTTIME),
// from /proc/uptime (proc(5)), which the kernel prints from that clock with
// a resolution of 10 ms; 0 when it cannot be read. The value is
// informational: it places a request among the kernel's program load times.
func bootTimeNS() uint64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	sec, frac, _ := strings.Cut(f, ".")
	s, err := strconv.ParseUint(sec, 10, 64)
	if err != nil {
		return 0
	}
	ns := s * 1e9
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		v, err := strconv.ParseUint(frac, 10, 64)
		if err != nil {
			return ns
		}
		for i := len(frac); i < 9; i++ {
			v *= 10
		}
		ns += v
	}
	return ns
}
