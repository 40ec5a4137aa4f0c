# Open-Local developer targets. `make test` is the one command that runs every tier.
GO ?= go

.PHONY: sim demo test build generate verify lint

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/open-local ./cmd/open-local

sim:
	$(GO) run ./cmd/open-local sim

demo:
	$(GO) run ./cmd/open-local demo

test:
	bash hack/test-all.sh

generate:
	bash hack/update-codegen.sh

verify:
	bash hack/verify-codegen.sh

lint:
	gofmt -l . ; $(GO) vet ./... ; $$($(GO) env GOPATH)/bin/staticcheck ./...
