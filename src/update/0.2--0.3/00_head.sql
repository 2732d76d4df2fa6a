-- sync extension, update from 0.2 to 0.3 (built from src/update/0.2--0.3/*.sql
-- by the Makefile).  Every change to the SQL surface since 0.2 is here as
-- well as in src/sql/*.sql; test/t/006_upgrade.pl checks that an updated
-- schema is identical to a fresh install.
\echo Use "ALTER EXTENSION sync UPDATE TO '0.3'" to load this file. \quit
