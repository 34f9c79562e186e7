"""Training: the LightningModule, optimizer specs, callbacks and durable artefacts.
Nothing here reads Hydra configs."""
