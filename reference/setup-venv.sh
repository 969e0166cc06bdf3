#!/usr/bin/env bash
# setup-venv.sh: a Python virtualenv for the reference implementation (reference/seed_loop.py,
# reference/make_fixtures.py) with torch 2.1.2 built from the very wheel whose libtorch the Go
# build links (scripts/libtorch.lock), so Python goldens and the Go engine share one libtorch.
#
# Usage: bash reference/setup-venv.sh [VENV_DIR]     (default: $REPO/.venv-ref, git-ignored)
#
# - torch and the nvidia-*-cu12 wheels are installed with --no-deps from the nst wheel cache,
#   ${NST_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nst}/wheels (filled by `make setup`). `import torch`
#   preloads the CUDA runtime libraries even on CPU, so every wheel in the lock is installed.
#   A wheel missing from the cache is downloaded by its pinned requirement and checked against
#   the lock's sha256 before use.
# - From PyPI: nvidia-nvjitlink-cu12==12.1.105 (--no-deps; libcusparse.so.12 links libnvJitLink.so.12
#   and the lock does not carry it, so torch's import fails without it; 12.1.105 is CUDA 12.1's),
#   torchvision==0.16.2 (--no-deps; it is the release built for torch 2.1.2), pillow, numpy<2 (torch
#   2.1 was built against numpy 1.x), requests (torchvision.datasets imports it) and torch's
#   pure-Python dependencies.
#
# Idempotent: a venv that already imports torch 2.1.2+cu121 and torchvision 0.16.2 is left alone.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-$repo/.venv-ref}
cache=${NST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nst}
wheels="$cache/wheels"
lock="$repo/scripts/libtorch.lock"
want_torch=2.1.2+cu121
want_vision=0.16.2

log() { echo "reference setup: $*" >&2; }
die() {
	echo "reference setup: error: $*" >&2
	exit 1
}
sha256() { sha256sum "$1" | cut -d' ' -f1; }

check() {
	[[ -x "$venv/bin/python" ]] || return 1
	"$venv/bin/python" - "$want_torch" "$want_vision" <<'PY' 2>/dev/null
import sys
import numpy, PIL, torch, torchvision  # noqa: F401
assert torch.__version__ == sys.argv[1], torch.__version__
assert torchvision.__version__.split("+")[0] == sys.argv[2], torchvision.__version__
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
PY
}

if check; then
	log "$venv is ready (torch $want_torch, torchvision $want_vision)"
	exit 0
fi

command -v python3 >/dev/null || die "python3 is needed"
[[ -f "$lock" ]] || die "$lock not found"

# Every wheel of the lock, verified (downloaded by its pinned requirement if the cache lacks it).
mkdir -p "$wheels"
files=()
while read -r _ req file want; do
	path="$wheels/$file"
	if [[ ! -f "$path" || "$(sha256 "$path")" != "$want" ]]; then
		rm -f "$path"
		log "downloading $req (not in $wheels)"
		tmp=$(mktemp -d "$wheels/.download.XXXXXX")
		python3 -m pip download --quiet --no-deps --only-binary=:all: \
			--platform manylinux1_x86_64 --platform manylinux2014_x86_64 \
			--python-version 3.11 --implementation cp -d "$tmp" "$req" >&2 ||
			{
				rm -rf "$tmp"
				die "pip download $req failed"
			}
		[[ -f "$tmp/$file" ]] || {
			rm -rf "$tmp"
			die "pip fetched a different file for $req than the pinned $file"
		}
		got=$(sha256 "$tmp/$file")
		[[ "$got" == "$want" ]] || {
			rm -rf "$tmp"
			die "$file has sha256 $got, but scripts/libtorch.lock pins $want"
		}
		mv "$tmp/$file" "$path"
		rm -rf "$tmp"
	fi
	files+=("$path")
done < <(grep -v '^[[:space:]]*#' "$lock" | awk 'NF == 4 {print $1, $2, $3, $4}')

[[ -x "$venv/bin/python" ]] || {
	log "creating $venv"
	python3 -m venv "$venv"
}
py="$venv/bin/python"
"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
	die "$venv is not Python 3.11; the pinned torch wheel is cp311 (remove $venv and use a python3.11)"

pip=("$py" -m pip install --quiet --disable-pip-version-check)
log "installing torch 2.1.2 and the CUDA runtime wheels from $wheels"
"${pip[@]}" --no-deps --no-index "${files[@]}"
log "installing nvidia-nvjitlink-cu12, torchvision==$want_vision (both --no-deps), pillow, numpy<2 and torch's Python deps from PyPI"
"${pip[@]}" --no-deps nvidia-nvjitlink-cu12==12.1.105 "torchvision==$want_vision"
"${pip[@]}" pillow "numpy<2" requests filelock typing-extensions sympy networkx jinja2 fsspec

check || die "the venv at $venv does not import torch $want_torch / torchvision $want_vision; see the messages above"
"$py" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, 'cuda available:', torch.cuda.is_available())"
log "$venv is ready"
