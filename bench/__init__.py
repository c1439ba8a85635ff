"""Benchmarks of lakesync against single-pass peers (``make bench``)."""
