# The project's image for docker-compose.yml: the worker, the API and the stand-in mailbox.
FROM python:3.11.11-slim
# The extras to install: rocksdb for STORE=rocksdb://; add mssql for a Sampro or processscheduler on
# SQL Server, which brings from apt unixODBC's libodbc (pyodbc links against it) and Kerberos's
# GSSAPI library (the bundled ODBC Driver 18 does). docker-compose.yml passes EXTRAS from .env:
#   EXTRAS=rocksdb,mssql
ARG EXTRAS=rocksdb
WORKDIR /app
# The constraints are the versions the tests ran on; installing without them takes whatever is newest.
COPY . /app
RUN case ",${EXTRAS}," in *,mssql,*) \
        apt-get update && apt-get install -y --no-install-recommends unixodbc libgssapi-krb5-2 && rm -rf /var/lib/apt/lists/* ;; \
    esac \
    && pip install --no-cache-dir --constraint constraints.txt ".[${EXTRAS}]" \
    && useradd --system --create-home --home-dir /home/app app \
    && mkdir /data && chown app /data
USER app
ENV INVOICE_AUTOMATION_DATA_DIR=/data
