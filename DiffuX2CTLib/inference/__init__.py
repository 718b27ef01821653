"""Reconstruction of one radiograph pair: options, input checks, preprocessing, sampling, the result and its preview."""
