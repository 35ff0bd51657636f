"""Training: losses, G_ema, checkpoints and the training loop."""
