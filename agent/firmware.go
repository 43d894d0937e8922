package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// DefaultFirmwareLog is where Linux exposes the firmware's TPM event log
// (drivers/char/tpm/eventlog): the events UEFI firmware, shim and GRUB
// measured into the boot PCRs before the kernel started.
const DefaultFirmwareLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// NoFirmwareLog as Config.FirmwareLog serves no firmware log.
const NoFirmwareLog = "none"

// firmwareLog is the firmware event log as the agent read it at start: the
// log of this boot, read once (the firmware wrote it before the kernel
// started; it does not change within a boot).
type firmwareLog struct {
	path    string // where it was read, "" when none was configured
	log     []byte // nil when there is none
	problem string // why there is none
}

// describe says what the agent serves, for Status and the start log line.
func (f *firmwareLog) describe() string {
	if f.log != nil {
		return fmt.Sprintf("%s (%d bytes)", f.path, len(f.log))
	}
	return "none: " + f.problem
}

// firmwareLogPath resolves Config.FirmwareLog: "" is the host's log when
// the TPM is a device, none for the simulator and swtpm (the host's
// firmware did not extend their PCRs, so its log would not replay to
// theirs).
func firmwareLogPath(s settings) (path, why string) {
	switch {
	case s.FirmwareLog == NoFirmwareLog:
		return "", "not configured (--firmware-log none)"
	case s.FirmwareLog != "":
		return s.FirmwareLog, ""
	case strings.HasPrefix(s.TPM, "/dev/"):
		return DefaultFirmwareLog, ""
	}
	return "", fmt.Sprintf("the TPM (%s) is not the one the host's firmware measured into; give --firmware-log for a log replayed into it", s.TPM)
}

// readFirmwareLog reads the firmware log, at most
// evidence.MaxFirmwareLogSize bytes. A log that is absent, unreadable,
// empty or too large is no log, with the reason: the agent runs without
// one and verifiers see "no firmware log".
func readFirmwareLog(s settings) firmwareLog {
	path, why := firmwareLogPath(s)
	if path == "" {
		return firmwareLog{problem: why}
	}
	f := firmwareLog{path: path}
	b, err := boundedfile.ReadFile(path, evidence.MaxFirmwareLogSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.problem = fmt.Sprintf("%s does not exist (no TPM event log from the firmware)", path)
	case errors.Is(err, boundedfile.ErrTooLarge):
		f.problem = fmt.Sprintf("%s is larger than %d bytes", path, evidence.MaxFirmwareLogSize)
	case err != nil:
		f.problem = fmt.Sprintf("unreadable: %v", err)
	case len(b) == 0:
		f.problem = fmt.Sprintf("%s is empty", path)
	default:
		f.log = b
	}
	return f
}
