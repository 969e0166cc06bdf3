# nst: `make setup` once per machine (and after a clean clone), then `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
NST_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nst
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(NST_CACHE)/bin/staticcheck-$(STATICCHECK_VERSION)
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# An execution count, not a duration: with a duration, Go 1.26's fuzz coordinator can report
# "context deadline exceeded" as a failure when a worker is mid-input at the deadline on a busy
# machine (golang/go#75804, fixed in Go 1.27; it failed FuzzDecode once here, with no input
# written). 100000 inputs took 4 and 11 s for the two targets on the 2-core development VM.
FUZZTIME ?= 100000x

# Packages that do not reach gotch build without cgo and run under the race detector.
PURE_PKGS = $$($(GO) list -f '{{.ImportPath}}{{range .Deps}} {{.}}{{end}}' ./... | awk '!/sugarme\/gotch/ {print $$1}')
TORCH_PKGS = $$($(GO) list -f '{{.ImportPath}}{{range .Deps}} {{.}}{{end}}' ./... | awk '/sugarme\/gotch/ {print $$1}')

# k8s/validate is a module of its own (k8s.io/kubernetes); the repository's go.work does not list it.
K8S_VALIDATE := cd k8s/validate && GOWORK=off
# NST_TEST_TOOLS=0: setup skips what only the tests need (moto's S3 server, k8s/validate's
# modules); the image build (Dockerfile) sets it.
NST_TEST_TOOLS ?= 1

.PHONY: setup build test test-nocgo lint check-setup fuzz bench clean k8s-validate

## setup: fetch libtorch 2.1.2, wire gotch to it (go.work), install moto's S3 server (.venv-moto)
## and staticcheck, download k8s/validate's modules, build bin/nst.
setup:
	bash scripts/setup.sh
	@if [[ "$(NST_TEST_TOOLS)" != 0 ]]; then \
		bash scripts/setup-moto.sh && $(K8S_VALIDATE) $(GO) mod download; fi
	@if [[ ! -x $(STATICCHECK) ]]; then \
		echo "nst setup: installing staticcheck $(STATICCHECK_VERSION)" >&2; \
		tmp=$$(mktemp -d); GOBIN=$$tmp GOWORK=off $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
		mkdir -p $(NST_CACHE)/bin; mv $$tmp/staticcheck $(STATICCHECK); rm -rf $$tmp; fi
	$(MAKE) --no-print-directory build
	@# Fetch now what lint's tidy check reads (tests of dependencies), so make test downloads nothing.
	@GOWORK=off $(GO) mod tidy -diff >/dev/null || echo "nst setup: go.mod/go.sum are not tidy, make lint will fail: run 'GOWORK=off go mod tidy'" >&2
	$(GO) run ./examples/gen
	bin/nst version

check-setup:
	@bash scripts/check-setup.sh

## build: the CLI at bin/nst (runs without LD_LIBRARY_PATH: libtorch is on its rpath).
build: check-setup
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/nst ./cmd/nst

## test: formatting, vet, staticcheck, a tidy and verified module, the race detector on pure-Go
## packages, the same packages without cgo or the workspace, the libtorch packages, and short
## fuzz runs.
test: check-setup lint
	@# -short under the race detector: the catalogue-scale tests (20,000+ items) run in test-nocgo.
	$(GO) test -race -short -timeout 30m $(PURE_PKGS)
	$(MAKE) --no-print-directory test-nocgo
	$(GO) test -timeout 30m $(TORCH_PKGS)
	$(MAKE) --no-print-directory k8s-validate
	$(MAKE) --no-print-directory fuzz
	@# go test hides the skip reasons of passing packages: say the one that matters here.
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || \
		echo "make test: SKIPPED pipeline.TestContactSheetInBrowser: no chromium on PATH (apt-get install chromium; CI installs it and fails without it)" >&2

## test-nocgo: the README's promise: every package that does not need gotch builds, vets and
## tests without cgo and without the go.work that make setup writes.
test-nocgo:
	GOWORK=off CGO_ENABLED=0 $(GO) build $(PURE_PKGS)
	GOWORK=off CGO_ENABLED=0 $(GO) vet $(PURE_PKGS)
	GOWORK=off CGO_ENABLED=0 $(GO) test -timeout 30m $(PURE_PKGS)

## k8s-validate: kube-apiserver's create path (k8s.io/kubernetes v1.37.2) on every object of every
## kustomize tree under k8s/. Offline (GOPROXY=off); the first build takes minutes, later ones
## come from Go's build cache.
k8s-validate:
	@$(K8S_VALIDATE) GOPROXY=off $(GO) list -deps -test ./... >/dev/null 2>&1 || \
		{ echo "nst: k8s/validate's modules are not in the Go module cache — run 'make setup' first" >&2; exit 2; }
	$(K8S_VALIDATE) GOPROXY=off $(GO) vet ./...
	@if [[ -x $(STATICCHECK) ]]; then $(K8S_VALIDATE) GOPROXY=off $(STATICCHECK) ./...; else echo "staticcheck missing: run 'make setup'" >&2; exit 2; fi
	@# -count=1: the trees are outside k8s/validate's module, so Go's test cache would not see them change.
	$(K8S_VALIDATE) GOPROXY=off $(GO) test -count=1 ./...

lint: check-setup
	@unformatted=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
		if [[ -n "$$unformatted" ]]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	@GOWORK=off $(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'GOWORK=off go mod tidy'" >&2; exit 1; }
	GOWORK=off $(GO) mod verify
	$(GO) vet ./...
	@if [[ -x $(STATICCHECK) ]]; then $(STATICCHECK) ./...; else echo "staticcheck missing: run 'make setup'" >&2; exit 2; fi

## fuzz: a short run of each fuzz target (their corpora live in testdata/fuzz).
fuzz: check-setup
	@for target in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r grep -ho '^func Fuzz[A-Za-z0-9_]*' | sort -u | sed 's/^func //'); do \
		pkg=$$(dirname $$(grep -rl --include='*_test.go' "^func $$target(" . | head -1)); \
		echo "fuzz $$target in $$pkg ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

## bench: the benchmarks, nst against the seed's PyTorch loop on the same libtorch, as markdown
## (docs/BENCHMARKS.md; needs .venv-ref from reference/setup-venv.sh; BENCH_PARTS=step etc.).
bench: check-setup
	bash bench/run.sh $(BENCH_PARTS)

clean:
	rm -rf bin go.work go.work.sum
