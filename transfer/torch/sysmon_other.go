//go:build !linux

package torch

import "errors"

// quietSysmon and schedNormal are Linux-only (sysmon_linux.go): elsewhere the runtime's monitor
// thread keeps its scheduling.
func quietSysmon() (int, error) { return 0, errors.New("not on Linux") }

func schedNormal() error { return nil }
