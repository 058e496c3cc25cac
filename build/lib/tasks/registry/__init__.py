"""Registry: MLflow tracking set-up, the pyfunc model, logging, registration and promotion."""
