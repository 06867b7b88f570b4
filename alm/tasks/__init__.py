"""Tasks turn data-set items and masks into ``Problem`` batches for the sampling core."""
