#!/usr/bin/env bash
# check-setup.sh: one clear line instead of a wall of cgo/linker errors when `make setup` has
# not run in this checkout (or its cache was removed since).
set -u
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fail() {
	echo "nst: $* — run 'make setup' first" >&2
	exit 2
}
[[ -f "$repo/go.work" ]] || fail "libtorch is not set up in this checkout (no go.work)"
dir=$(sed -n 's/^replace github.com\/sugarme\/gotch v0.9.1 => \(.*\)$/\1/p' "$repo/go.work")
[[ -n "$dir" && -f "$dir/.nst-complete" ]] || fail "the gotch copy named in go.work is missing ($dir)"
lib=$(sed -n 's/^\/\/ #cgo LDFLAGS: .* -L\([^ ]*\) .*/\1/p' "$dir/libtch/lib.go")
[[ -n "$lib" && -f "$lib/libtorch_cpu.so" ]] || fail "libtorch is missing from $lib"
exit 0
