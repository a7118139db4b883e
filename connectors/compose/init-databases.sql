-- docker-compose only: the databases beside `marketplace` (created by POSTGRES_DB).
CREATE DATABASE sampro OWNER invoice;
CREATE DATABASE scheduler OWNER invoice;
