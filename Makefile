# tollgate — see README.md. Run `make help` for the targets.
GO        ?= go
POLICY    ?= examples/payments/policy.yaml
STORE     ?= file:./tollgate-data
BIN       := bin/tollgate
PKGS      := ./...
# The examples' tests are a module of their own (examples/go.mod), so that
# the product's module does not require what only they use.
EXAMPLES  := examples
FUZZTIME  ?= 10s
STATICCHECK_VERSION ?= v0.8.2

.DEFAULT_GOAL := help

.PHONY: help build run test bench bench-e2e fuzz lint fmt tidy ci clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/tollgate
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/tollgate

run: build ## serve the payments example: gRPC on :9001, HTTP authorization on :9003, admin API on 127.0.0.1:9002, state in ./tollgate-data
	$(BIN) serve --policy $(POLICY) --grpc-addr :9001 --http-addr :9003 --store $(STORE)

test: ## run every test with the race detector, the product's and the examples'
	$(GO) test -race -count=1 $(PKGS)
	cd $(EXAMPLES) && $(GO) test -race -count=1 ./...

bench: ## run the benchmarks (never part of make test)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./policy/ ./alerts/ ./store/memory/ ./store/file/ ./store/redis/ ./envoy/ ./server/ ./replay/

bench-e2e: build ## the floor, each scenario and envoyproxy/ratelimit (built once into the user cache) under the same load, rows appended to BENCHMARKS.md (minutes)
	$(GO) run ./cmd/bench-e2e --bin $(BIN) --out BENCHMARKS.md

fuzz: ## run each fuzz target briefly
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME) ./policyfile/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./envoy/
	$(GO) test -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime $(FUZZTIME) ./envoy/

lint: ## go vet and staticcheck on both modules (installed on demand; a missing linter fails)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)
	cd $(EXAMPLES) && $(GO) vet ./...
	cd $(EXAMPLES) && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

fmt: ## fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

tidy: ## fail when go mod tidy would change go.mod or go.sum, of either module
	$(GO) mod tidy -diff
	cd $(EXAMPLES) && $(GO) mod tidy -diff

ci: fmt tidy lint test ## what CI runs

clean: ## remove build output
	rm -rf bin
