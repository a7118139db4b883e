# The project's image for docker-compose.yml: the worker, the API and the stand-in mailbox.
FROM python:3.11.11-slim
WORKDIR /app
# The constraints are the versions the tests ran on; installing without them takes whatever is newest.
COPY . /app
RUN pip install --no-cache-dir --constraint constraints.txt . \
    && useradd --system --create-home --home-dir /home/app app \
    && mkdir /data && chown app /data
USER app
ENV INVOICE_AUTOMATION_DATA_DIR=/data
