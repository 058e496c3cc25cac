"""Data: acquire a dataset, read and write the YOLO format, validate, augment and preview it."""
