# Convenience targets; the README's two commands need none of them.
VENV ?= .venv

.PHONY: test slurm-test slurm-plan slurm-up slurm-down

test:
	$(VENV)/bin/python -m pytest -q

# A real one-node SLURM cluster on localhost (Debian packages, root), the tiny workflow with every
# system through profiles/slurm, its results compared with a local run's. FDT_SLURM_REQUIRED: a
# cluster that did not come up fails the tests instead of skipping them.
slurm-test:
	$(VENV)/bin/pip install -q -e '.[test,slurm]'
	tests/slurm/cluster.sh install
	tests/slurm/cluster.sh start
	FDT_SLURM_REQUIRED=1 $(VENV)/bin/python -m pytest -q -m slurm tests/test_slurm.py -rs

# What config/paper.yaml asks of a cluster through profiles/slurm (a dry run): jobs, memory,
# runtime, threads and GPUs per rule, GPU-hours and CPU-hours per system.
slurm-plan:
	$(VENV)/bin/python profiles/slurm/plan.py --configfile config/paper.yaml

slurm-up:
	tests/slurm/cluster.sh start

slurm-down:
	tests/slurm/cluster.sh stop
