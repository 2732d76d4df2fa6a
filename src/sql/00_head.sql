-- sync extension, install script of the current version (built from
-- src/sql/*.sql by the Makefile).  Released versions are frozen in
-- sync--<version>.sql; changes since go into src/update/<from>--<to>/ too.
\echo Use "CREATE EXTENSION sync" to load this file. \quit
