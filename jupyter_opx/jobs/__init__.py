"""Jobs: notebooks run by papermill with typed parameters, schedules and lineage."""
