package testcontroller

import (
	"syscall"
	"time"
	"unsafe"
)

// monotonicMicros reads CLOCK_MONOTONIC in µs (what BlueChi reports as
// LastSeenTimestampMonotonic); it falls back to the time since process start.
func monotonicMicros() uint64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno == 0 {
		return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
	}
	return uint64(time.Since(monoStart).Microseconds()) + 1
}
