"""Training runs: two-phase training into a run folder, the run registry and the train job."""
