#!/bin/sh
# The two database roles of docs/operations.md, on the first start of the PostgreSQL
# container (docker-entrypoint-initdb.d): the schema owner runs the migrations, the runtime
# role is what the application connects as. `qms init` grants the runtime role afterwards.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_pw="$QMS_OWNER_PASSWORD" -v runtime_pw="$QMS_RUNTIME_PASSWORD" <<'SQL'
CREATE ROLE qms_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE qms_runtime LOGIN PASSWORD :'runtime_pw';
CREATE DATABASE qms OWNER qms_owner;
\connect qms
ALTER SCHEMA public OWNER TO qms_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
