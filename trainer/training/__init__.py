"""Training: the config, the data pipeline (buckets, latent cache), the loop, checkpoints, metrics, validation."""
