// Command nst runs neural style transfer: one image from a terminal (nst stylize) or a whole
// catalogue from a manifest, sharded across Kubernetes pods (nst run).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
