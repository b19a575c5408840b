"""The farm: job folders run as Ray tasks on a cluster (`python -m backend farm run JOB_DIR...`).

- `jobs.py`: what each job needs and how it ended (no Ray): resources per mode, states, retries,
  the summary table, the exit code.
- `task.py`: what runs inside one Ray task (stdlib only, pickled by value): the shared-storage
  check, then `python -m backend run JOB` as a child, its events streamed back tagged with the job.
- `cluster.py`: connecting to a cluster or starting a loopback-only local one; the event sink actor.
- `driver.py`: submit, follow, retry, cancel, summarise.
- `cli.py`: the command line.

Ray is an optional dependency of the generator environment; nothing else in the generator
imports this package, and it imports Ray only inside functions.
"""
