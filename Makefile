# Conveniences; the README's commands are the reference.
.PHONY: test dev build bench
test:
	./scripts/test.sh
dev:
	go run ./cmd/rampart dev
build:
	go build -o rampart ./cmd/rampart
bench:
	./bench/run.sh
