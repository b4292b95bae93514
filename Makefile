# snapward — the two set-up commands:
#   make demo   backup, wipe, automatic restore on a local OpenBao + S3
#   make test   install what the tests need, then run every test
SHELL := /bin/bash
CARGO ?= cargo
# A target dir outside the clone survives fresh clones (CI runs on the
# developer machine): cold builds of the AWS SDK take minutes here.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/snapward/target

.PHONY: test demo check schema deploy-check

test: check
	scripts/run-tests.sh

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings

schema:
	$(CARGO) run -q -- schema > schemas/snapshot-policy.schema.json

demo:
	@scripts/demo.sh

deploy-check:
	scripts/validate-deploy.sh
