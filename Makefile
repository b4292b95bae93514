# snapward — the two set-up commands:
#   make demo   backup, wipe, automatic restore on a local OpenBao + S3
#   make test   install what the tests need, then run every test (the
#               whole suite on OpenBao 2.7.2, a smoke set on 2.6.2)
#   make smoke  only the smoke set on the older OpenBao (~30 s)
SHELL := /bin/bash
CARGO ?= cargo
# A target dir outside the clone survives fresh clones (CI runs on the
# developer machine): cold builds of the AWS SDK take minutes here.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/snapward/target

.PHONY: test smoke demo check deny schema deploy-check

test: check
	scripts/run-tests.sh

smoke:
	scripts/run-tests.sh --smoke

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings
	$(MAKE) --no-print-directory deny

# Dependency licenses, banned crates and sources (deny.toml), offline.
# cargo-deny reads `cargo metadata` for every platform, so the manifests of
# crates the host build never compiles (Windows/Android-only) must be in the
# registry cache first: `cargo fetch` downloads them (a fresh CI machine has
# only what clippy built). Advisories need the RustSec database:
# `cargo deny check advisories` (README "Tests").
deny:
	@$(CARGO) fetch --locked --quiet
	@eval "$$(scripts/test-env.sh)" && "$$SNAPWARD_CARGO_DENY" --offline --locked check licenses bans sources

schema:
	$(CARGO) run -q -- schema > schemas/snapshot-policy.schema.json

demo:
	@scripts/demo.sh

deploy-check:
	scripts/validate-deploy.sh
