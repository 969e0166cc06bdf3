#!/usr/bin/env bash
# setup.sh — what `make setup` runs.
#
# 1. Fetches libtorch 2.1.2 from the PyPI wheel torch==2.1.2 (the only libtorch 2.1 reachable here;
#    Debian's is 1.13 and gotch v0.9.1 does not compile with it), checks each wheel against the
#    sha256 pinned in scripts/libtorch.lock, and unpacks what the build needs into a cache outside
#    git: ${NST_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nst}/libtorch-2.1.2-<device>.
# 2. Makes a build-time copy of gotch v0.9.1 (from the Go module cache, which stays untouched)
#    whose libtch/lib.go links that libtorch: -ltorch_cpu -lc10 (plus torch_cuda for CUDA), the
#    pre-C++11 ABI in CXXFLAGS, and an rpath so binaries run without LD_LIBRARY_PATH.
# 3. Writes a git-ignored go.work that replaces gotch with that copy, so plain `go build ./...`
#    and `go test ./...` work in any new shell.
#
# Idempotent: finished steps are recorded by stamp files and skipped; a partial or corrupt cache
# fails its check and is rebuilt.
#
# Environment:
#   NST_DEVICE=cpu|cuda   cuda also fetches the CUDA 12.1 runtime wheels and links torch_cuda.
#   LIBTORCH=/path        use an existing libtorch 2.1.x (lib/ and include/) instead of the wheel.
#   NST_CXX11_ABI=0|1     override the C++ ABI detected for LIBTORCH.
#   NST_CACHE=/path       where downloads and unpacked libraries live.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${NST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nst}
device=${NST_DEVICE:-cpu}
torch_version=2.1.2
gotch_module=github.com/sugarme/gotch
gotch_version=v0.9.1
lock="$repo/scripts/libtorch.lock"

log() { echo "nst setup: $*" >&2; }
die() {
	echo "nst setup: error: $*" >&2
	exit 1
}

case "$device" in
cpu | cuda) ;;
*) die "NST_DEVICE must be cpu or cuda, not '$device'" ;;
esac
command -v go >/dev/null || die "go is not on PATH; install Go 1.26 or newer"
command -v g++ >/dev/null || die "g++ is not on PATH; gotch's C++ wrapper needs a C++17 compiler (apt-get install g++)"

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# lock_lines prints the lock entries this device needs: "requirement file sha256".
lock_lines() {
	grep -v '^[[:space:]]*#' "$lock" | awk -v dev="$device" 'NF == 4 && ($1 == "all" || $1 == dev) {print $2, $3, $4}'
}

# fetch_wheel downloads one pinned wheel into $cache/wheels unless a verified copy is there.
fetch_wheel() {
	local req=$1 file=$2 want=$3 dir="$cache/wheels"
	mkdir -p "$dir"
	if [[ -f "$dir/$file" && "$(sha256 "$dir/$file")" == "$want" ]]; then
		return 0
	fi
	[[ -f "$dir/$file" ]] && {
		log "$file is corrupt or partial (sha256 mismatch); downloading it again"
		rm -f "$dir/$file"
	}
	command -v python3 >/dev/null || die "python3 with pip is needed to download $req"
	local size=""
	[[ "$req" == torch==* ]] && size=", about 670 MB"
	log "downloading $req (pip download --no-deps$size)"
	local tmp
	tmp=$(mktemp -d "$dir/.download.XXXXXX")
	if ! python3 -m pip download --quiet --no-deps --only-binary=:all: \
		--platform manylinux1_x86_64 --platform manylinux2014_x86_64 \
		--python-version 3.11 --implementation cp -d "$tmp" "$req" >&2; then
		rm -rf "$tmp"
		die "downloading $req from PyPI failed (see pip's message above). Check that PyPI is reachable and re-run 'make setup'; or place $file (sha256 $want) in $dir yourself and re-run"
	fi
	[[ -f "$tmp/$file" ]] || {
		rm -rf "$tmp"
		die "pip fetched a different file for $req than the pinned $file; scripts/libtorch.lock needs updating"
	}
	local got
	got=$(sha256 "$tmp/$file")
	if [[ "$got" != "$want" ]]; then
		rm -rf "$tmp"
		die "$file has sha256 $got, but scripts/libtorch.lock pins $want; refusing to use it"
	fi
	mv "$tmp/$file" "$dir/$file"
	rm -rf "$tmp"
}

# unpack_wheel extracts the members a build needs from one wheel into $2.
unpack_wheel() {
	python3 - "$1" "$2" "$device" <<'PY'
import sys, zipfile, fnmatch, os
wheel, dest, device = sys.argv[1:]
if os.path.basename(wheel).startswith("torch-"):
    keep = ["torch/include/*", "torch/version.py", "torch/lib/libc10.so", "torch/lib/libtorch_cpu.so", "torch/lib/libgomp-*"]
    if device == "cuda":
        keep.append("torch/lib/*")
else:
    keep = ["nvidia/*/lib/*"]
with zipfile.ZipFile(wheel) as z:
    for m in z.infolist():
        if m.is_dir() or not any(fnmatch.fnmatch(m.filename, k) for k in keep):
            continue
        if m.filename.endswith(("libtorch_python.so", "libshm.so")):
            continue
        z.extract(m, dest)
PY
}

# --- libtorch ---------------------------------------------------------------------------------
if [[ -n "${LIBTORCH:-}" ]]; then
	libtorch_lib="$LIBTORCH/lib"
	libtorch_inc="$LIBTORCH/include"
	[[ -f "$libtorch_lib/libtorch_cpu.so" && -f "$libtorch_lib/libc10.so" ]] ||
		die "LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so and lib/libc10.so; point it at an unpacked libtorch 2.1.x"
	[[ -f "$libtorch_inc/torch/csrc/api/include/torch/torch.h" ]] ||
		die "LIBTORCH=$LIBTORCH has no include/torch/csrc/api/include/torch/torch.h"
	if [[ -n "${NST_CXX11_ABI:-}" ]]; then
		abi=$NST_CXX11_ABI
	elif nm -D --defined-only "$libtorch_lib/libc10.so" 2>/dev/null | grep -q '__cxx11'; then
		abi=1
	else
		abi=0
	fi
	if [[ "$device" == cuda && ! -f "$libtorch_lib/libtorch_cuda.so" ]]; then
		die "NST_DEVICE=cuda, but LIBTORCH=$LIBTORCH has no lib/libtorch_cuda.so (is it a CPU build?)"
	fi
	log "using LIBTORCH=$LIBTORCH (C++11 ABI=$abi, device $device)"
else
	abi=0 # the PyPI wheels of torch 2.1 are built with the pre-C++11 ABI
	root="$cache/libtorch-$torch_version-$device"
	stamp="$root/.nst-complete"
	want_stamp=$(lock_lines | sha256sum | cut -d' ' -f1)
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" && -f "$root/torch/lib/libtorch_cpu.so" ]]; then
		log "libtorch $torch_version ($device) already unpacked in $root"
	else
		[[ -d "$root" ]] && log "libtorch cache in $root is incomplete or stale; rebuilding it"
		while read -r req file want; do
			fetch_wheel "$req" "$file" "$want"
		done < <(lock_lines)
		tmp=$(mktemp -d "$cache/.libtorch.XXXXXX")
		while read -r _ file _; do
			log "unpacking $file"
			unpack_wheel "$cache/wheels/$file" "$tmp"
		done < <(lock_lines)
		echo "$torch_version" >"$tmp/torch/build-version"
		echo "$want_stamp" >"$tmp/.nst-complete"
		rm -rf "$root"
		mv "$tmp" "$root"
	fi
	libtorch_lib="$root/torch/lib"
	libtorch_inc="$root/torch/include"
fi

# --- gotch copy with a lib.go for this libtorch ----------------------------------------------
gotch_src=$(cd "$repo" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$gotch_module@$gotch_version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -n "$gotch_src" && -f "$gotch_src/libtch/lib.go" ]] ||
	die "could not get $gotch_module@$gotch_version from the Go module proxy (go mod download failed)"

ldflags="-lstdc++ -L$libtorch_lib -Wl,-rpath,$libtorch_lib -ltorch_cpu -lc10"
if [[ "$device" == cuda ]]; then
	# Without --no-as-needed the linker drops torch_cuda (nothing references it directly), and
	# libtorch then reports CUDA as unavailable.
	ldflags="$ldflags -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed"
fi
libgo=$(
	cat <<EOF
// Code generated by nst's scripts/setup.sh for libtorch in $libtorch_lib ($device); DO NOT EDIT.
// It replaces gotch's published lib.go, which links CUDA and looks for libtorch in \${SRCDIR}.

package libtch

// #cgo LDFLAGS: $ldflags
// #cgo CFLAGS: -I\${SRCDIR} -O3 -Wall -Wno-unused-variable -Wno-deprecated-declarations -g -Wno-sign-compare -Wno-unused-function
// #cgo CFLAGS: -D_GLIBCXX_USE_CXX11_ABI=$abi
// #cgo CXXFLAGS: -std=c++17 -I\${SRCDIR} -g -O3 -D_GLIBCXX_USE_CXX11_ABI=$abi
// #cgo CXXFLAGS: -I$libtorch_inc -I$libtorch_inc/torch/csrc/api/include
import "C"
EOF
)
# gotch's generated ops each C.malloc(0) a slot for the result handle and never free it: about
# 32 bytes a tensor op (gotch issues #102, #115, #132), megabytes per thousand optimiser steps.
# The copy frees that slot once the op has returned (the handle has been read by then), and
# gives it a real pointer's size. Only the single-result form is rewritten; multi-result ops
# are left as they are (nst does not use them).
alloc_old='  ptr := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))'
alloc_new='  ptr := (*lib.Ctensor)(unsafe.Pointer(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)))))); defer C.free(unsafe.Pointer(ptr))'
# gotch also gives every Tensor a 100 KB Go array (bigStruct), so that Go's collector runs
# finalizers for tensors nobody dropped. nst drops every tensor itself (TestNoTensorLeak), and
# at ~95 tensors an optimiser step the array made 9.7 MB of Go garbage and a collection per
# step, whose work took a core from libtorch's two threads (docs/BENCHMARKS.md, section 1).
# The copy makes the array empty; TestTensorsPerStep fails if it is not.
big_old='	lots [1e5]byte // 100k - always on host memory.'
big_new='	lots [0]byte // nst: empty (scripts/setup.sh); gotch has 1e5 here'
patch_id="free-op-result-slot-v1,empty-bigstruct-v1"
key=$(printf '%s\n%s' "$libgo" "$patch_id" | sha256sum | cut -c1-12)
gotch_dir="$cache/gotch-$gotch_version-$key"
if [[ -f "$gotch_dir/.nst-complete" ]] && cmp -s <(printf '%s\n' "$libgo") "$gotch_dir/libtch/lib.go" &&
	[[ "$(cat "$gotch_dir/.nst-patches" 2>/dev/null)" == "$patch_id" ]]; then
	log "gotch copy ready in $gotch_dir"
else
	tmp=$(mktemp -d "$cache/.gotch.XXXXXX")
	cp -R "$gotch_src/." "$tmp/"
	chmod -R u+w "$tmp"
	printf '%s\n' "$libgo" >"$tmp/libtch/lib.go"
	gen="$tmp/ts/tensor-generated.go"
	n=$(grep -cxF -- "$alloc_old" "$gen" || true)
	[[ "$n" -gt 2000 ]] || die "gotch's ts/tensor-generated.go does not look like v0.9.1's ($n result slots found); cannot patch it"
	ALLOC_OLD="$alloc_old" ALLOC_NEW="$alloc_new" perl -pi -e 's/^\Q$ENV{ALLOC_OLD}\E$/$ENV{ALLOC_NEW}/' "$gen"
	[[ "$(grep -cxF -- "$alloc_old" "$gen" || true)" == 0 ]] || die "patching $gen failed"
	tensor_go="$tmp/ts/tensor.go"
	[[ "$(grep -cxF -- "$big_old" "$tensor_go" || true)" == 1 ]] || die "gotch's ts/tensor.go does not look like v0.9.1's (no bigStruct array); cannot patch it"
	BIG_OLD="$big_old" BIG_NEW="$big_new" perl -pi -e 's/^\Q$ENV{BIG_OLD}\E$/$ENV{BIG_NEW}/' "$tensor_go"
	[[ "$(grep -cxF -- "$big_new" "$tensor_go" || true)" == 1 ]] || die "patching $tensor_go failed"
	echo "$patch_id" >"$tmp/.nst-patches"
	touch "$tmp/.nst-complete"
	rm -rf "$gotch_dir"
	mv "$tmp" "$gotch_dir"
	log "gotch $gotch_version copied to $gotch_dir with a lib.go for this libtorch"
fi

# --- go.work ----------------------------------------------------------------------------------
cd "$repo"
rm -f go.work go.work.sum
GOWORK=off go work init .
go work edit -replace="$gotch_module@$gotch_version=$gotch_dir"
log "wrote go.work (git-ignored): $gotch_module $gotch_version => $gotch_dir"
