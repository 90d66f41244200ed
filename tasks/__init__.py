"""multiattn tasks: each package holds a model, a LightningModule, a LightningDataModule and its data."""
