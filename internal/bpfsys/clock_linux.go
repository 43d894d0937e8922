//go:build amd64 || arm64 || riscv64 || loong64 || ppc64le || ppc64 || s390x || mips64 || mips64le

package bpfsys

import "golang.org/x/sys/unix"

// BootTimeNS returns CLOCK_BOOTTIME (time since boot, suspend included) in
// nanoseconds: the clock of the kernel's bpf_prog_info.load_time, so a
// measurement taken with it orders among the programs' load times. 0 when
// the clock cannot be read.
func BootTimeNS() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}
