-- sync extension, version 0.1 (built from src/sql/*.sql by the Makefile)
\echo Use "CREATE EXTENSION sync" to load this file. \quit
