/* store.c - SQLite: open in WAL mode, numbered migrations, a pool of connections.
 *
 * The schema version lives in PRAGMA user_version; migrations[i] moves the schema from
 * version i to i+1 inside one transaction, so a store is always at a whole version.
 * The audit trail is append-only: triggers refuse UPDATE and DELETE on audit_events. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "limits.h"
#include "store.h"
#include "util.h"

struct store {
    char *dir;
    char *path; /* dir/steward.db */
    int sync_full;
    size_t n;
    sqlite3 **conns;     /* guarded by mu */
    unsigned char *busy; /* busy[i]: conns[i] is lent out; guarded by mu */
    struct stmt_cache *caches; /* caches[i]: conns[i]'s statements, used by its borrower */
    /* the checkpointer: a thread with its own connection copies the WAL back into the
     * database once a commit leaves it STW_CHECKPOINT_PAGES long, so that no query's commit
     * pays for it (SQLite's automatic checkpoint runs inside the commit that crosses it) */
    pthread_t ckpt_thread;
    int ckpt_running;           /* the thread was started */
    sqlite3 *ckpt_conn;         /* the thread's own */
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    int ckpt_wanted, ckpt_stop; /* guarded by ckpt_mu */
    int ckpt_copied;            /* WAL frames the last checkpoint left copied; ckpt_mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static const char *const migrations[] = {
    /* 1: the whole foundation schema */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE principals("
    "  id TEXT PRIMARY KEY, roles INTEGER NOT NULL, domains TEXT NOT NULL,"
    "  key_id TEXT NOT NULL UNIQUE, key_hash BLOB NOT NULL, created_ms INTEGER NOT NULL);"
    "CREATE TABLE products("
    "  name TEXT PRIMARY KEY, domain TEXT NOT NULL, owner TEXT NOT NULL, description TEXT,"
    "  terms TEXT, deidentified INTEGER NOT NULL DEFAULT 0, contract TEXT NOT NULL"
    "  CHECK(json_valid(contract)), created_ms INTEGER NOT NULL);"
    "CREATE TABLE versions("
    "  id INTEGER PRIMARY KEY, product TEXT NOT NULL REFERENCES products(name),"
    "  name TEXT NOT NULL, state INTEGER NOT NULL, chunks INTEGER NOT NULL DEFAULT 0,"
    "  content_hash TEXT, created_ms INTEGER NOT NULL, published_ms INTEGER,"
    "  retired_ms INTEGER, UNIQUE(product, name));"
    "CREATE TABLE chunks("
    "  version_id INTEGER NOT NULL REFERENCES versions(id), chunk_id TEXT NOT NULL,"
    "  hash BLOB NOT NULL, text TEXT NOT NULL, conf INTEGER NOT NULL,"
    "  compartments TEXT NOT NULL, source_system TEXT, record_id TEXT, document_id TEXT,"
    "  section TEXT, subject TEXT, created_ms INTEGER, provenance TEXT NOT NULL,"
    "  metadata TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY(version_id, chunk_id)"
    ") WITHOUT ROWID;"
    "CREATE TABLE grants("
    "  id TEXT PRIMARY KEY, principal TEXT NOT NULL REFERENCES principals(id),"
    "  product TEXT, domain TEXT, purposes INTEGER NOT NULL, clearance INTEGER NOT NULL,"
    "  compartments TEXT NOT NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER);"
    "CREATE INDEX grants_principal ON grants(principal) WHERE revoked_ms IS NULL;"
    "CREATE TABLE suppressions("
    "  id TEXT PRIMARY KEY, product TEXT NOT NULL, kind INTEGER NOT NULL, value TEXT NOT NULL,"
    "  reason TEXT, created_ms INTEGER NOT NULL, lifted_ms INTEGER);"
    "CREATE INDEX suppressions_product ON suppressions(product) WHERE lifted_ms IS NULL;"
    "CREATE TABLE policy(id INTEGER PRIMARY KEY CHECK(id = 1), version INTEGER NOT NULL,"
    "  hash TEXT NOT NULL);"
    "CREATE TABLE audit_events("
    "  seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, type TEXT NOT NULL, principal TEXT,"
    "  detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE INDEX audit_events_at ON audit_events(at_ms);"
    "CREATE INDEX audit_events_type ON audit_events(type, seq);"
    "CREATE INDEX audit_events_principal ON audit_events(principal, seq);"
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    "  BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;"
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    "  BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;"
    "CREATE TABLE receipts("
    "  query_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
    "  principal TEXT NOT NULL, purpose TEXT NOT NULL, policy_version INTEGER NOT NULL,"
    "  results INTEGER NOT NULL, receipt TEXT NOT NULL);"
    "CREATE INDEX receipts_at ON receipts(at_ms);"
    "CREATE TABLE disclosures("
    "  query_id TEXT NOT NULL, rank INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
    "  principal TEXT NOT NULL, purpose TEXT NOT NULL, product TEXT NOT NULL,"
    "  version TEXT NOT NULL, chunk_id TEXT NOT NULL, source_system TEXT, document_id TEXT,"
    "  subject TEXT, PRIMARY KEY(query_id, rank)) WITHOUT ROWID;"
    "CREATE INDEX disclosures_subject ON disclosures(subject, at_ms);"
    "CREATE TRIGGER receipts_no_update BEFORE UPDATE ON receipts"
    "  BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;"
    "CREATE TRIGGER receipts_no_delete BEFORE DELETE ON receipts"
    "  BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;"
    "INSERT INTO policy(id, version, hash) VALUES (1, 0, '');",
    /* 2 (docs/audit.md): usage rollups, queries and chunks per principal, purpose and product
     * per hour and per day, so GET /v1/usage reads whole buckets and only the partial hours at
     * a window's edges from receipts; audit_record_query keeps them in the receipt's
     * transaction, and existing receipts are counted in here. Disclosures become append-only. */
    "CREATE TABLE usage_rollup("
    "  res INTEGER NOT NULL, bucket INTEGER NOT NULL, dim TEXT NOT NULL, key TEXT NOT NULL,"
    "  queries INTEGER NOT NULL, chunks INTEGER NOT NULL,"
    "  PRIMARY KEY(res, bucket, dim, key)) WITHOUT ROWID;"
    "INSERT INTO usage_rollup SELECT r.res, at_ms / r.res, 'principal', principal, count(*),"
    "  sum(results) FROM receipts, (SELECT 3600000 AS res UNION ALL SELECT 86400000) r"
    "  GROUP BY 1, 2, 4;"
    "INSERT INTO usage_rollup SELECT r.res, at_ms / r.res, 'purpose', purpose, count(*),"
    "  sum(results) FROM receipts, (SELECT 3600000 AS res UNION ALL SELECT 86400000) r"
    "  GROUP BY 1, 2, 4;"
    "INSERT INTO usage_rollup SELECT r.res, at_ms / r.res, 'product', product,"
    "  count(DISTINCT query_id), count(*) FROM disclosures,"
    "  (SELECT 3600000 AS res UNION ALL SELECT 86400000) r GROUP BY 1, 2, 4;"
    /* the accounting of disclosures reads a subject's rows from the index alone, in order */
    "CREATE INDEX disclosures_by_subject ON disclosures(subject, at_ms, query_id, rank,"
    "  principal, purpose, product, version, chunk_id, source_system, document_id);"
    "DROP INDEX disclosures_subject;"
    /* disclosure rows are append-only like the receipts they repeat */
    "CREATE TRIGGER disclosures_no_update BEFORE UPDATE ON disclosures"
    "  BEGIN SELECT RAISE(ABORT, 'disclosures are append-only'); END;"
    "CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures"
    "  BEGIN SELECT RAISE(ABORT, 'disclosures are append-only'); END;",
    /* 3 (docs/search.md): policy.generation counts every change to what a query resolves
     * against (products, versions, principals, grants, suppressions), bumped by triggers so
     * that no code path, in this process or another, can forget it. The query path keeps its
     * resolutions in memory and trusts them while the generation is unchanged. */
    "ALTER TABLE policy ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;"
    "CREATE TRIGGER gen_products_ins AFTER INSERT ON products"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_products_upd AFTER UPDATE ON products"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_products_del AFTER DELETE ON products"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_versions_ins AFTER INSERT ON versions"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_versions_upd AFTER UPDATE ON versions"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_versions_del AFTER DELETE ON versions"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_principals_ins AFTER INSERT ON principals"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_principals_upd AFTER UPDATE ON principals"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_principals_del AFTER DELETE ON principals"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_grants_ins AFTER INSERT ON grants"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_grants_upd AFTER UPDATE ON grants"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_grants_del AFTER DELETE ON grants"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_supps_ins AFTER INSERT ON suppressions"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_supps_upd AFTER UPDATE ON suppressions"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;"
    "CREATE TRIGGER gen_supps_del AFTER DELETE ON suppressions"
    "  BEGIN UPDATE policy SET generation = generation + 1 WHERE id = 1; END;",
    /* 4 (docs/audit.md): the accounting of disclosures is found through sorted runs instead
     * of an index on disclosures(subject, ...). That index took one random leaf page per
     * returned chunk into every receipt (16 of a receipt's 31 WAL pages, each written again by
     * the checkpoint). A run lists (subject, at_ms, query_id, rank) for the receipts of one
     * span of the chain, sorted by subject, and is written once, in order, when the span is
     * full (audit_record_query); disclosures after the last run are read in time order through
     * disclosures_at, an index that only ever grows at its end. Runs are
     * derived from receipts and disclosures, which stay the record. Existing disclosures
     * become run 1. */
    "CREATE TABLE subject_runs("
    "  run INTEGER PRIMARY KEY, from_seq INTEGER NOT NULL, upto_seq INTEGER NOT NULL,"
    "  from_at INTEGER NOT NULL, upto_at INTEGER NOT NULL, rows INTEGER NOT NULL);"
    "CREATE TABLE subject_index("
    "  run INTEGER NOT NULL, subject TEXT NOT NULL, at_ms INTEGER NOT NULL,"
    "  query_id TEXT NOT NULL, rank INTEGER NOT NULL,"
    "  PRIMARY KEY(run, subject, at_ms, query_id, rank)) WITHOUT ROWID;"
    "INSERT INTO subject_index SELECT 1, d.subject, d.at_ms, d.query_id, d.rank"
    "  FROM disclosures d WHERE d.subject IS NOT NULL ORDER BY 2, 3, 4, 5;"
    "INSERT INTO subject_runs SELECT 1, min(seq), max(seq), min(at_ms), max(at_ms),"
    "  (SELECT count(*) FROM subject_index) FROM receipts HAVING count(*) > 0;"
    "CREATE INDEX disclosures_at ON disclosures(at_ms, subject);"
    "DROP INDEX disclosures_by_subject;"
    /* derived, but the accounting reads them: append-only like what they index */
    "CREATE TRIGGER subject_runs_no_update BEFORE UPDATE ON subject_runs"
    "  BEGIN SELECT RAISE(ABORT, 'subject runs are append-only'); END;"
    "CREATE TRIGGER subject_runs_no_delete BEFORE DELETE ON subject_runs"
    "  BEGIN SELECT RAISE(ABORT, 'subject runs are append-only'); END;"
    "CREATE TRIGGER subject_index_no_update BEFORE UPDATE ON subject_index"
    "  BEGIN SELECT RAISE(ABORT, 'subject runs are append-only'); END;"
    "CREATE TRIGGER subject_index_no_delete BEFORE DELETE ON subject_index"
    "  BEGIN SELECT RAISE(ABORT, 'subject runs are append-only'); END;",
    /* 5 (docs/audit.md): two index pages fewer in every receipt. A time window becomes a seq
     * range by binary search (at_ms never decreases along the chain), not through an index
     * on at_ms; the type index leaves out query events (~90 % of the chain: a type=query page
     * walks the chain itself, in seq order). */
    "DROP INDEX audit_events_at;"
    "DROP INDEX audit_events_type;"
    "CREATE INDEX audit_events_type ON audit_events(type, seq) WHERE type <> 'query';",
    /* 6 (docs/audit.md): a span of the chain's receipts by seq. Subject runs and verify found
     * it through receipts_at and filtered on seq, which reads every receipt since the span's
     * first time: all of them when the clock stood still or stepped back (the chain then
     * repeats the last time), quadratic over a run of such receipts. */
    "CREATE INDEX receipts_seq ON receipts(seq);",
    /* 7 (docs/audit.md): the disclosures after the last subject run are found through their
     * receipts (receipts_seq, then the disclosures' own key), not through an index on
     * disclosures(at_ms, subject): that index took ten entries into every receipt of ten
     * chunks, for a read that sees at most one run's worth of receipts. */
    "DROP INDEX disclosures_at;",
};

#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

stw_code store_error(sqlite3 *db, stw_error *err)
{
    int rc = sqlite3_extended_errcode(db) & 0xff;
    const char *msg = sqlite3_errmsg(db);

    switch (rc) {
    case SQLITE_FULL:
        return stw_errorf(err, STW_UNAVAILABLE, "storage_full", "the store is full: %s", msg);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PERM:
        return stw_errorf(err, STW_UNAVAILABLE, "storage_unavailable",
                          "the store cannot be written now: %s", msg);
    default:
        return stw_errorf(err, STW_STORE, "store_error", "store: %s", msg);
    }
}

stw_code store_exec(sqlite3 *db, const char *sql, stw_error *err)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return store_error(db, err);
    return STW_OK;
}

stw_code store_prepare(sqlite3 *db, sqlite3_stmt **stmt, const char *sql, stw_error *err)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) != SQLITE_OK) {
        *stmt = NULL;
        return store_error(db, err);
    }
    return STW_OK;
}

void store_cache_init(struct stmt_cache *sc, sqlite3 *db)
{
    memset(sc, 0, sizeof *sc);
    sc->db = db;
}

void store_cache_clear(struct stmt_cache *sc)
{
    for (size_t i = 0; i < sc->n; i++)
        sqlite3_finalize(sc->slot[i].stmt);
    sc->n = 0;
}

stw_code store_take(struct stmt_cache *sc, sqlite3 *db, sqlite3_stmt **stmt, const char *sql,
                    stw_error *err)
{
    stw_code rc;

    if (sc != NULL && sc->db == db) {
        for (size_t i = 0; i < sc->n; i++) {
            if (sc->slot[i].sql == sql && !sc->slot[i].lent) {
                sc->slot[i].lent = 1;
                *stmt = sc->slot[i].stmt;
                return STW_OK;
            }
        }
    }
    rc = store_prepare(db, stmt, sql, err);
    if (rc == STW_OK && sc != NULL && sc->db == db && sc->n < STORE_CACHE_SLOTS) {
        sc->slot[sc->n].sql = sql;
        sc->slot[sc->n].stmt = *stmt;
        sc->slot[sc->n].lent = 1;
        sc->n++;
    }
    return rc;
}

void store_give(struct stmt_cache *sc, sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return;
    for (size_t i = 0; sc != NULL && i < sc->n; i++) {
        if (sc->slot[i].stmt == stmt) {
            sqlite3_reset(stmt);
            sqlite3_clear_bindings(stmt);
            sc->slot[i].lent = 0;
            return;
        }
    }
    sqlite3_finalize(stmt);
}

stw_code store_exec_cached(struct stmt_cache *sc, sqlite3 *db, const char *sql, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc = store_take(sc, db, &stmt, sql, err);
    if (rc == STW_OK && sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    store_give(sc, stmt);
    return rc;
}

stw_code store_begin_read(sqlite3 *db, stw_error *err)
{
    return store_exec(db, "BEGIN", err);
}

stw_code store_begin_write(sqlite3 *db, stw_error *err)
{
    return store_exec(db, "BEGIN IMMEDIATE", err);
}

stw_code store_commit(sqlite3 *db, stw_error *err)
{
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        stw_code rc = store_error(db, err);
        store_rollback(db);
        return rc;
    }
    return STW_OK;
}

void store_rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

void store_bind_text(sqlite3_stmt *stmt, int idx, const char *s)
{
    if (s == NULL)
        sqlite3_bind_null(stmt, idx);
    else
        sqlite3_bind_text(stmt, idx, s, -1, SQLITE_TRANSIENT);
}

const char *store_col_text(sqlite3_stmt *stmt, int col)
{
    return (const char *)sqlite3_column_text(stmt, col);
}

/* SQLite counts every allocation under one process-wide mutex unless told not to; with a few
 * threads querying at once that mutex was 10% of a query's CPU time. sqlite3_config only works
 * before SQLite initialises: if the program already used SQLite, this changes nothing. */
static int vfs_ok; /* set once, by sqlite_setup */

static void sqlite_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    vfs_ok = store_vfs_register() == SQLITE_OK;
}

static stw_code open_conn(const char *path, int flags, int sync_full, sqlite3 **out,
                          stw_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    sqlite3 *db = NULL;
    stw_code rc;

    pthread_once(&once, sqlite_setup);
    if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, vfs_ok ? STORE_VFS : NULL) !=
        SQLITE_OK) {
        rc = db ? store_error(db, err)
                : stw_errorf(err, STW_NOMEM, NULL, "cannot open %s", path);
        sqlite3_close(db);
        return rc == STW_STORE ? STW_UNAVAILABLE : rc;
    }
    sqlite3_busy_timeout(db, STW_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(db, 1);
    /* New stores only (a no-op once the file exists): a chunk row (d=384: ~2 KB) fits in a
     * 16 KiB page of the WITHOUT ROWID chunks table; with 4 KiB pages every row spilled to its
     * own overflow page, 2.4x the bytes written at ingest (docs/versions.md). */
    rc = store_exec(db, "PRAGMA page_size=4096", err);
    if (rc == STW_OK)
        rc = store_exec(db, "PRAGMA journal_mode=WAL", err);
    if (rc == STW_OK)
        rc = store_exec(db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                        err);
    if (rc == STW_OK)
        rc = store_exec(db, "PRAGMA foreign_keys=ON", err);
    /* Reads through a memory map instead of one pread per page, and a bigger page cache:
     * a query touches the catalog, the policy, k chunk rows and the audit tail. */
    if (rc == STW_OK)
        rc = store_exec(db, "PRAGMA mmap_size=" STW_SQLITE_MMAP_BYTES, err);
    if (rc == STW_OK)
        rc = store_exec(db, "PRAGMA cache_size=" STW_SQLITE_CACHE_KIB, err);
    /* Statement journals (a receipt's savepoint) in memory: in a temporary file, each receipt
     * created, wrote and unlinked a file (5 system calls and ~30 page writes per query). */
    if (rc == STW_OK)
        rc = store_exec(db, "PRAGMA temp_store=MEMORY", err);
    /* checkpoint less often: each one is an fsync that some query's receipt commit pays for */
    if (rc == STW_OK)
        rc = store_exec(db, "PRAGMA wal_autocheckpoint=" STW_SQLITE_CHECKPOINT_PAGES, err);
    if (rc != STW_OK) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return STW_OK;
}

static stw_code migrate_tx(sqlite3 *db, stw_error *err);

/* Migrations sort whole tables (index builds, migration 4's backfill): with temp_store=MEMORY
 * SQLite's sorter never spills, so they run with temporary files (~1 GB of RAM otherwise to
 * migrate a store of a million events). */
static stw_code migrate(sqlite3 *db, stw_error *err)
{
    stw_code rc = store_exec(db, "PRAGMA temp_store=FILE", err);
    if (rc == STW_OK)
        rc = migrate_tx(db, err);
    if (store_exec(db, "PRAGMA temp_store=MEMORY", rc == STW_OK ? err : NULL) != STW_OK &&
        rc == STW_OK)
        rc = STW_STORE;
    return rc;
}

static stw_code migrate_tx(sqlite3 *db, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;
    int version = 0;

    rc = store_begin_write(db, err);
    if (rc != STW_OK)
        return rc;
    rc = store_prepare(db, &stmt, "PRAGMA user_version", err);
    if (rc != STW_OK)
        goto fail;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (version < 0 || (size_t)version > N_MIGRATIONS) {
        rc = stw_errorf(err, STW_STORE, "store_too_new",
                        "store schema version %d is newer than this steward (%zu)", version,
                        N_MIGRATIONS);
        goto fail;
    }
    for (size_t i = (size_t)version; i < N_MIGRATIONS; i++) {
        char pragma[64];
        rc = store_exec(db, migrations[i], err);
        if (rc != STW_OK)
            goto fail;
        snprintf(pragma, sizeof pragma, "PRAGMA user_version=%zu", i + 1);
        rc = store_exec(db, pragma, err);
        if (rc != STW_OK)
            goto fail;
    }
    return store_commit(db, err);
fail:
    store_rollback(db);
    return rc;
}

/* sqlite3_wal_hook: runs after every commit on a connection of ours */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *st = arg;
    /* this hook replaces SQLite's automatic checkpoint (also a WAL hook): keep it as the
     * backstop for a WAL the thread cannot keep short (readers pinning it, a slow disk) */
    if (pages >= STW_CHECKPOINT_BACKSTOP_PAGES) {
        sqlite3_wal_checkpoint(db, name);
        return SQLITE_OK;
    }
    if (pages >= STW_CHECKPOINT_PAGES) {
        pthread_mutex_lock(&st->ckpt_mu);
        if (pages < st->ckpt_copied)
            st->ckpt_copied = 0; /* the WAL started over */
        /* only once STW_CHECKPOINT_PAGES more frames than the last checkpoint copied: a WAL
         * that cannot start over yet (a commit came in while the checkpoint ran) used to wake
         * the thread on every commit, one checkpoint and two fdatasync()s per 6 receipts */
        if (pages >= st->ckpt_copied + STW_CHECKPOINT_PAGES) {
            st->ckpt_wanted = 1;
            pthread_cond_signal(&st->ckpt_cv);
        }
        pthread_mutex_unlock(&st->ckpt_mu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    struct store *st = arg;

    pthread_mutex_lock(&st->ckpt_mu);
    for (;;) {
        while (!st->ckpt_wanted && !st->ckpt_stop)
            pthread_cond_wait(&st->ckpt_cv, &st->ckpt_mu);
        if (st->ckpt_stop)
            break;
        st->ckpt_wanted = 0;
        pthread_mutex_unlock(&st->ckpt_mu);
        /* PASSIVE: copies what no reader still needs, never waits for or blocks a writer;
         * a busy store just leaves the rest for the next round */
        int frames = 0, copied = 0;

        if (sqlite3_wal_checkpoint_v2(st->ckpt_conn, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames,
                                      &copied) == SQLITE_OK &&
            frames >= STW_CHECKPOINT_RESTART_PAGES) {
            /* The WAL starts over only when a writer begins with every frame copied, which
             * under a steady stream of receipts never happens (each commits while the
             * checkpoint runs). RESTART copies the few frames left and holds writers back
             * until readers are off the WAL, so that the next commit starts it over. */
            sqlite3_wal_checkpoint_v2(st->ckpt_conn, NULL, SQLITE_CHECKPOINT_RESTART, &frames,
                                      &copied);
        }
        pthread_mutex_lock(&st->ckpt_mu);
        st->ckpt_copied = copied > 0 ? copied : 0;
    }
    pthread_mutex_unlock(&st->ckpt_mu);
    return NULL;
}

void store_watch(struct store *st, sqlite3 *db)
{
    if (st->ckpt_running)
        sqlite3_wal_hook(db, wal_hook, st);
}

stw_code store_open(const char *dir, int create, size_t pool_size, int sync_full,
                    struct store **out, stw_error *err)
{
    struct store *st = NULL;
    char *path = NULL;
    size_t plen;
    struct stat sb;
    stw_code rc = STW_OK;

    if (pool_size == 0)
        pool_size = 1;
    plen = strlen(dir) + sizeof(STORE_DB_FILE) + 2;
    path = malloc(plen);
    if (path == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    snprintf(path, plen, "%s/%s", dir, STORE_DB_FILE);
    if (create) {
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            rc = stw_errorf(err, STW_UNAVAILABLE, "data_dir", "cannot create %s: %s", dir,
                            strerror(errno));
            goto fail;
        }
        if (stat(path, &sb) == 0) {
            rc = stw_errorf(err, STW_CONFLICT, "store_exists", "%s already holds a store", dir);
            goto fail;
        }
    } else if (stat(path, &sb) != 0) {
        rc = stw_errorf(err, STW_NOT_FOUND, "no_store",
                        "%s holds no store (run 'steward init --data %s')", dir, dir);
        goto fail;
    }
    st = calloc(1, sizeof *st);
    if (st == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    pthread_mutex_init(&st->ckpt_mu, NULL);
    pthread_cond_init(&st->ckpt_cv, NULL);
    st->dir = util_strdup(dir);
    st->conns = calloc(pool_size, sizeof *st->conns);
    st->busy = calloc(pool_size, 1);
    st->caches = calloc(pool_size, sizeof *st->caches);
    if (st->dir == NULL || st->conns == NULL || st->busy == NULL || st->caches == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto fail;
    }
    st->n = pool_size;
    st->path = path;
    st->sync_full = sync_full;
    path = NULL;
    for (size_t i = 0; i < pool_size; i++) {
        int flags = SQLITE_OPEN_READWRITE | (create && i == 0 ? SQLITE_OPEN_CREATE : 0);
        rc = open_conn(st->path, flags, sync_full, &st->conns[i], err);
        if (rc != STW_OK)
            goto fail;
        store_cache_init(&st->caches[i], st->conns[i]);
        if (i == 0) {
            rc = migrate(st->conns[0], err);
            if (rc != STW_OK)
                goto fail;
        }
    }
    /* the checkpointer; without it (no thread or connection) SQLite's automatic checkpoint,
     * left on in every connection as a backstop, does the work */
    if (open_conn(st->path, SQLITE_OPEN_READWRITE, sync_full, &st->ckpt_conn, NULL) == STW_OK) {
        if (pthread_create(&st->ckpt_thread, NULL, ckpt_main, st) == 0) {
            st->ckpt_running = 1;
            for (size_t i = 0; i < st->n; i++)
                store_watch(st, st->conns[i]);
        } else {
            sqlite3_close(st->ckpt_conn);
            st->ckpt_conn = NULL;
        }
    }
    free(path);
    *out = st;
    return STW_OK;
fail:
    free(path);
    store_close(st);
    return rc;
}

void store_close(struct store *st)
{
    if (st == NULL)
        return;
    if (st->ckpt_running) {
        pthread_mutex_lock(&st->ckpt_mu);
        st->ckpt_stop = 1;
        pthread_cond_signal(&st->ckpt_cv);
        pthread_mutex_unlock(&st->ckpt_mu);
        pthread_join(st->ckpt_thread, NULL);
    }
    sqlite3_close(st->ckpt_conn);
    pthread_mutex_destroy(&st->ckpt_mu);
    pthread_cond_destroy(&st->ckpt_cv);
    for (size_t i = 0; st->caches != NULL && i < st->n; i++)
        store_cache_clear(&st->caches[i]);
    for (size_t i = 0; st->conns != NULL && i < st->n; i++)
        sqlite3_close(st->conns[i]);
    free(st->caches);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st->conns);
    free(st->busy);
    free(st->dir);
    free(st->path);
    free(st);
}

stw_code store_open_extra(struct store *st, sqlite3 **out, stw_error *err)
{
    stw_code rc = open_conn(st->path, SQLITE_OPEN_READWRITE, st->sync_full, out, err);
    if (rc == STW_OK)
        store_watch(st, *out);
    return rc;
}

const char *store_dir(const struct store *st)
{
    return st->dir;
}

sqlite3 *store_acquire(struct store *st)
{
    sqlite3 *db = NULL;

    pthread_mutex_lock(&st->mu);
    for (;;) {
        for (size_t i = 0; i < st->n; i++) {
            if (!st->busy[i]) {
                st->busy[i] = 1;
                db = st->conns[i];
                break;
            }
        }
        if (db != NULL)
            break;
        pthread_cond_wait(&st->cv, &st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return db;
}

struct stmt_cache *store_cache(struct store *st, sqlite3 *db)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->conns[i] == db)
            return &st->caches[i];
    return NULL;
}

void store_release(struct store *st, sqlite3 *db)
{
    if (db == NULL)
        return;
    store_rollback(db); /* never hand on an open transaction */
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->n; i++) {
        if (st->conns[i] == db) {
            st->busy[i] = 0;
            break;
        }
    }
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}
