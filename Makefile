# The two commands of the README. Both work on a fresh machine: they create .venv first.
.PHONY: setup demo test

setup:
	./scripts/setup_venv.sh

demo: setup
	.venv/bin/llava-drive demo

test: setup
	./scripts/run_tests.sh
