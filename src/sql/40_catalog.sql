-- ---------------------------------------------------------------------------
-- Catalog: connections, secrets, mirrors, field mappings, pull state, outbox,
-- journal.  Every table is owned by the extension owner and readable by
-- nobody else unless granted; the secrets table never is.
-- ---------------------------------------------------------------------------

CREATE TABLE sync.connection (
    name        text PRIMARY KEY
                CHECK (name ~ '^[a-z_][a-z0-9_]{0,62}$'),
    provider    text NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}'     -- everything but the secrets
                CHECK (jsonb_typeof(options) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sync.connection IS 'one row per remote account; secrets live in sync.connection_secret';

-- Secrets are split off so that the non-secret options can be shown; this
-- table is readable only by its owner (the extension owner).
CREATE TABLE sync.connection_secret (
    connection  text PRIMARY KEY REFERENCES sync.connection (name) ON DELETE CASCADE,
    secrets     jsonb NOT NULL                  -- same paths as in options
);
REVOKE ALL ON sync.connection_secret FROM PUBLIC;
COMMENT ON TABLE sync.connection_secret IS 'secret connection options; owner-only, never shown';

CREATE TABLE sync.mirror (
    id              serial PRIMARY KEY,
    connection      text NOT NULL REFERENCES sync.connection (name),
    remote_object   text NOT NULL,
    local_table     regclass NOT NULL UNIQUE,
    direction       text NOT NULL DEFAULT 'both'
                    CHECK (direction IN ('both', 'pull', 'push')),
    options         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    key_column      name NOT NULL,              -- the table's primary key
    remote_id_column name NOT NULL,             -- unique; NULL until pushed
    stamp_column    name NOT NULL,              -- the remote's modification stamp
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sync.field (
    mirror          int NOT NULL REFERENCES sync.mirror (id) ON DELETE CASCADE,
    remote_name     text NOT NULL,
    local_column    name NOT NULL,
    remote_type     text NOT NULL,
    local_type      text NOT NULL,
    createable      boolean NOT NULL,
    updateable      boolean NOT NULL,
    reference_to    text,                       -- remote object a reference points at
    authority       text NOT NULL DEFAULT 'both'
                    CHECK (authority IN ('both', 'local', 'remote')),
    PRIMARY KEY (mirror, remote_name),
    UNIQUE (mirror, local_column)
);
COMMENT ON COLUMN sync.field.authority IS
    'both: two-way; local: never written from the remote; remote: never pushed';

-- Pull progress per mirror.  The cursor is the provider's own (opaque here)
-- and advances in the same transaction as the page it covers.
CREATE TABLE sync.mirror_state (
    mirror          int PRIMARY KEY REFERENCES sync.mirror (id) ON DELETE CASCADE,
    phase           text NOT NULL DEFAULT 'backfill'
                    CHECK (phase IN ('backfill', 'incremental', 'paused')),
    cursor          jsonb,
    backfill_total  bigint,
    backfill_done   bigint NOT NULL DEFAULT 0,
    next_pull_at    timestamptz NOT NULL DEFAULT now(),
    last_pull_at    timestamptz,
    last_push_at    timestamptz,
    remote_stamp_max timestamptz,               -- newest remote change applied
    last_error      text,
    last_error_at   timestamptz,
    failures        int NOT NULL DEFAULT 0
);

-- Pending local writes.  The capture trigger writes the operation and the
-- set of changed columns; values are read from the table at push time.
-- An entry that was never attempted absorbs later writes to the same row;
-- once attempted it is sealed and later writes queue behind it.  `slot`
-- says which: 0 = the row's open insert/update entry, 1 = its open delete,
-- -id = sealed.  One unique index on (mirror, local_key, slot) thus serves
-- coalescing (ON CONFLICT), per-row order and per-row lookups: every
-- captured write maintains two indexes, not four.
CREATE TABLE sync.outbox (
    id              bigserial PRIMARY KEY,
    mirror          int NOT NULL,               -- no FK: the check would cost every
                                                -- captured write; unmirror cleans up
    local_key       text NOT NULL,              -- primary key value, as text
    op              "char" NOT NULL,            -- I, U or D
    columns         name[],                     -- changed columns; NULL = all
    remote_id       text,                       -- known remote ID (deletes)
    idempotency_key text,
    state           text NOT NULL DEFAULT 'pending',  -- or 'parked'
    -- (no CHECK constraints: only the extension writes here, and checking
    -- them costs every captured write)
    slot            bigint NOT NULL DEFAULT 0,
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,                -- lease of the claimer
    claimed_by      int,
    error_code      text,
    error_message   text,
    error_fields    text[],
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX outbox_row ON sync.outbox (mirror, local_key, slot);

-- Captured writes not yet folded into sync.outbox.  The capture trigger
-- appends one row per write here, in the writer's transaction, and nothing
-- else: no index to maintain and no entry to look up, so a captured write
-- costs a heap insert.  The worker (and sync.push(), sync.pull() and the
-- functions that read the outbox of a mirror) folds the rows into
-- sync.outbox in seq order with the coalescing rules of the trigger head
-- in src/capture.c, deleting them in the same transaction: sync._fold().
-- seq comes from sync.outbox_id_seq and becomes the id of the entry the
-- row opens, so entries keep the order in which their writes were made.
CREATE TABLE sync.capture_log (
    seq         bigint NOT NULL,
    at          timestamptz NOT NULL,
    mirror      int NOT NULL,
    op          "char" NOT NULL,                -- I, U or D
    local_key   text NOT NULL,
    columns     name[],                         -- changed columns; NULL = all
    remote_id   text
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

-- What was sent and received: record, fields, a hash of the values, result.
-- An append-only log written for every record of every batch and page, so
-- each write maintains as little as possible: a BRIN index (time, for the
-- reader and for retention), and only for what was sent a B-tree by record
-- (the echo checks of every pull look up our last push of a record; a
-- B-tree entry for each record received cost a page's apply as much as its
-- journal rows themselves); no primary key.
CREATE TABLE sync.journal (
    id          bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),  -- order of writing, per writer
    at          timestamptz NOT NULL DEFAULT now(),
    mirror      int NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('out', 'in')),
    op          "char" NOT NULL,
    local_key   text,
    remote_id   text,
    fields      text[],
    values_hash text,
    result      text NOT NULL,
    detail      text
);
CREATE INDEX journal_at ON sync.journal USING brin (at);
CREATE INDEX journal_remote ON sync.journal (mirror, remote_id) WHERE direction = 'out';

-- pg_dump keeps connections, mirrors, mappings and pull state.
SELECT pg_catalog.pg_extension_config_dump('sync.connection', '');
SELECT pg_catalog.pg_extension_config_dump('sync.connection_secret', '');
SELECT pg_catalog.pg_extension_config_dump('sync.mirror', '');
SELECT pg_catalog.pg_extension_config_dump('sync.mirror_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sync.field', '');
SELECT pg_catalog.pg_extension_config_dump('sync.mirror_state', '');
SELECT pg_catalog.pg_extension_config_dump('sync.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('sync.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sync.capture_log', '');

REVOKE ALL ON ALL TABLES IN SCHEMA sync FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA sync FROM PUBLIC;
