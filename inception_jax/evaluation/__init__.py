"""Evaluation: multi-crop and ensemble evaluation of training runs and converted weights
(`evaluate`)."""
