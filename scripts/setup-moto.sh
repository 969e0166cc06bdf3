#!/usr/bin/env bash
# setup-moto.sh — the moto step of `make setup`: moto's standalone S3 server, the second S3
# implementation storage/storagetest and the pipeline's end-to-end test run against.
#
# 1. Fetches each wheel pinned in scripts/moto.lock (moto[server]==5.2.5 and its dependencies)
#    with pip into ${NST_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nst}/wheels/moto-5.2.5 and checks it
#    against the lock's sha256 (pip's --require-hashes, then again here by file name).
# 2. Installs exactly those wheels (--no-index --no-deps) into a git-ignored virtualenv,
#    $REPO/.venv-moto, and runs `pip check`, so a lock that misses a dependency fails here.
#
# Idempotent: a venv whose stamp matches the lock (and this checkout's path) and that imports
# moto 5.2.5 is left alone; cached wheels are reused; a partial venv (no stamp) is rebuilt.
# Nothing is downloaded at test time: the tests start .venv-moto/bin/python.
#
# Environment:
#   NST_CACHE=/path       where the wheels are kept (shared with scripts/setup.sh).
#   NST_PYTHON=python3.11 the interpreter for the venv (default: python3.11, else python3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${NST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nst}
moto_version=5.2.5
lock="$repo/scripts/moto.lock"
venv="$repo/.venv-moto"
wheels="$cache/wheels/moto-$moto_version"

log() { echo "nst setup: $*" >&2; }
die() {
	echo "nst setup: error: $*" >&2
	exit 1
}
sha256() { sha256sum "$1" | cut -d' ' -f1; }

[[ -f "$lock" ]] || die "$lock not found"
# lock_lines prints the lock entries: "requirement file sha256".
lock_lines() { grep -v '^[[:space:]]*#' "$lock" | awk 'NF == 3 {print $1, $2, $3}'; }
want_stamp=$({
	lock_lines
	echo "$venv"
} | sha256sum | cut -d' ' -f1)

imports_moto() {
	"$venv/bin/python" -c 'import sys, moto.server; assert moto.__version__ == sys.argv[1], moto.__version__' "$moto_version" 2>/dev/null
}
if [[ -f "$venv/.nst-complete" && "$(cat "$venv/.nst-complete")" == "$want_stamp" ]] && imports_moto; then
	log "moto $moto_version ready in $venv"
	exit 0
fi

py=${NST_PYTHON:-}
if [[ -z "$py" ]]; then
	py=python3
	command -v python3.11 >/dev/null && py=python3.11
fi
command -v "$py" >/dev/null || die "$py is not on PATH; moto's S3 server for the tests needs CPython 3.11 with venv and pip (set NST_PYTHON)"
"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null ||
	die "$py is Python $("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), but the wheels in scripts/moto.lock are for CPython 3.11; set NST_PYTHON to a python3.11"

# --- wheels -------------------------------------------------------------------------------------
mkdir -p "$wheels"
req=$(mktemp)
trap 'rm -f "$req"' EXIT
n=0
while read -r requirement file want; do
	path="$wheels/$file"
	[[ -f "$path" && "$(sha256 "$path")" == "$want" ]] && continue
	[[ -f "$path" ]] && {
		log "$file is corrupt or partial (sha256 mismatch); downloading it again"
		rm -f "$path"
	}
	echo "$requirement --hash=sha256:$want" >>"$req"
	n=$((n + 1))
done < <(lock_lines)
if [[ "$n" -gt 0 ]]; then
	log "downloading $n of moto[server]==$moto_version's pinned wheels (pip download --require-hashes, about 50 MB in all)"
	tmp=$(mktemp -d "$wheels/.download.XXXXXX")
	platforms=()
	for p in manylinux_2_34_x86_64 manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
		platforms+=(--platform "$p")
	done
	if ! "$py" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: \
		"${platforms[@]}" --python-version 3.11 --implementation cp -d "$tmp" -r "$req" >&2; then
		rm -rf "$tmp"
		die "downloading moto's wheels from PyPI failed (see pip's message above). Check that PyPI is reachable and re-run 'make setup'; or place the files named in scripts/moto.lock in $wheels yourself and re-run"
	fi
	while read -r requirement file want; do
		[[ -f "$wheels/$file" ]] && continue
		[[ -f "$tmp/$file" ]] || {
			rm -rf "$tmp"
			die "pip fetched a different file for $requirement than the pinned $file; scripts/moto.lock needs updating"
		}
		got=$(sha256 "$tmp/$file")
		[[ "$got" == "$want" ]] || {
			rm -rf "$tmp"
			die "$file has sha256 $got, but scripts/moto.lock pins $want; refusing to use it"
		}
		mv "$tmp/$file" "$wheels/$file"
	done < <(lock_lines)
	rm -rf "$tmp"
fi

# --- venv ---------------------------------------------------------------------------------------
[[ -d "$venv" ]] && log "$venv is incomplete or stale; rebuilding it"
rm -rf "$venv"
log "creating $venv with moto[server]==$moto_version from $wheels"
"$py" -m venv "$venv" || die "'$py -m venv' failed (on Debian: apt-get install python3-venv)"
files=()
while read -r _ file _; do files+=("$wheels/$file"); done < <(lock_lines)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps "${files[@]}" >&2 ||
	die "installing moto's wheels into $venv failed (see pip's message above)"
check=$("$venv/bin/python" -m pip check --disable-pip-version-check 2>&1) || {
	echo "$check" >&2
	die "the wheels in scripts/moto.lock do not satisfy each other's requirements (pip check above); the lock needs updating"
}
imports_moto || die "$venv does not import moto $moto_version"
echo "$want_stamp" >"$venv/.nst-complete"
log "moto $moto_version ready in $venv"
