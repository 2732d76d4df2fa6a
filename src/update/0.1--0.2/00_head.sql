-- sync extension, update from 0.1 to 0.2 (built from src/update/0.1--0.2/*.sql
-- by the Makefile).  Every change to the SQL surface since 0.1 is here as
-- well as in src/sql/*.sql; test/t/006_upgrade.pl checks that an updated
-- schema is identical to a fresh install.
\echo Use "ALTER EXTENSION sync UPDATE TO '0.2'" to load this file. \quit
