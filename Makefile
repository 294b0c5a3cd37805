# The two commands of the README. Both set everything up first (idempotent).
.PHONY: serve test check setup setup-dev

serve: setup
	.venv/bin/polyroute serve

test: setup-dev check
	.venv/bin/python -m pytest -q

check:
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/ruff format --check src tests benchmarks scripts
	.venv/bin/mypy

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh dev
