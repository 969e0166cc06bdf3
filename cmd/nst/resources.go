package main

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// logResources logs what the command used: its peak resident memory (VmHWM, the high-water mark
// of this process's own memory; getrusage's maxrss would also count the parent's memory at the
// fork) and its CPU time. Operators size pods from it; bench/scale reads it.
func logResources(logger *slog.Logger, command string) {
	attrs := []any{"command", command}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				if kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					attrs = append(attrs, "peak_rss_mib", float64(kib)/1024)
				}
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		attrs = append(attrs, "cpu_s", float64(ru.Utime.Nano()+ru.Stime.Nano())/1e9)
	}
	logger.Info("resources", attrs...)
}
