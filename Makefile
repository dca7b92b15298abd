# Convenience targets; the README's two commands need none of them.
VENV ?= .venv

.PHONY: test slurm-test slurm-up slurm-down

test:
	$(VENV)/bin/python -m pytest -q

# A real one-node SLURM cluster on localhost (Debian packages, root), the tiny workflow through
# profiles/slurm, its results compared with a local run's.
slurm-test:
	$(VENV)/bin/pip install -q -e '.[test,slurm]'
	tests/slurm/cluster.sh install
	tests/slurm/cluster.sh start
	$(VENV)/bin/python -m pytest -q -m slurm tests/test_slurm.py -rs

slurm-up:
	tests/slurm/cluster.sh start

slurm-down:
	tests/slurm/cluster.sh stop
