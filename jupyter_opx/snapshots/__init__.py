"""Snapshots: capture, codecs (skops, parquet), load, diff, reference summaries."""
