package main

import (
	"context"
	"os"
	"testing"
)

// TestMain lets the test binary stand in for nst when nst run starts engine workers: they are
// started as os.Executable() with "worker" as the first argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
