"""What the jobs share: each pipeline stage's transforms and its run (ingest, annotate, near-duplicates and similar
images, queries, the report), the nightly scheduler and the training rows. Jobs wire these; nothing here is a job."""
