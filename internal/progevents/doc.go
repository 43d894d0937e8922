// Package progevents follows the kernel's BPF program load and unload
// events: every program that comes into existence or leaves the kernel,
// however briefly it lives, with its id, its tag and the task that loaded
// or released it.
//
// It is the only package of the module that opens perf events. The source
// is the perf_event_open(2) interface (include/uapi/linux/perf_event.h):
// one software dummy event per online CPU (PERF_TYPE_SOFTWARE,
// PERF_COUNT_SW_DUMMY) with the bpf_event attribute bit (bit 30 of the
// flags word), which makes the kernel write a PERF_RECORD_BPF_EVENT
// (kernel/events/core.c perf_event_bpf_event) into the ring of the CPU a
// program was loaded or released on. sample_id_all with PERF_SAMPLE_TID,
// PERF_SAMPLE_TIME (CLOCK_BOOTTIME, the clock of bpf_prog_info.load_time)
// and PERF_SAMPLE_CPU adds the task, the time and the CPU to every record.
// A full ring drops records and says how many with PERF_RECORD_LOST: the
// caller must then account for the kernel's programs another way (walk the
// program ids) and say that events were lost.
//
// Opening the events needs CAP_PERFMON or CAP_SYS_ADMIN (and a
// perf_event_paranoid setting that allows system-wide events to them).
// CPUs brought online after Open are not watched; CPU hotplug is rare on
// the hosts this serves and the caller's sweep covers it.
//
// Record parsing (parseRecord) is pure and fuzzed; the ring reader only
// copies records out of the mapped pages.
package progevents
