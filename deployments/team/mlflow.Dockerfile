# The MLflow tracking server of the team stack: MLflow's own image plus the PostgreSQL driver
# (the version pinned in constraints.txt). Built by compose.yaml.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.11
