"""Self-supervised pretraining of tile encoders straight from slides (`pathssl pretrain`)."""
