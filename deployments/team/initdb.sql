-- The MLflow server's database beside Prefect's (POSTGRES_DB), owned by the same role.
CREATE DATABASE mlflow OWNER fingerspell;
