/* store.h - the SQLite store: one database file (steward.db, WAL mode) in the data folder,
 * numbered schema migrations, and a fixed pool of connections shared by request threads.
 *
 * Thread: store_acquire/store_release may be called from any thread; a connection is used by
 * one thread at a time (the one that acquired it). Write transactions are BEGIN IMMEDIATE so
 * that writers queue on SQLite's lock (busy timeout) instead of failing mid-transaction. */
#ifndef STW_STORE_H
#define STW_STORE_H

#include <sqlite3.h>

#include "steward.h"

struct store;

#define STORE_DB_FILE "steward.db"
#define STORE_VFS     "steward" /* vfs.c: the default VFS, one write per WAL commit */

/* vfs.c: register STORE_VFS (not as the default). SQLITE_OK or an SQLite error code. */
int store_vfs_register(void);

/* Open (create = 1: create a new store; the folder must not already hold one) the store in
 * dir with pool_size connections. Owned: store_close(). */
stw_code store_open(const char *dir, int create, size_t pool_size, int sync_full,
                    struct store **out, stw_error *err);
void store_close(struct store *st);

/* Borrowed: the data folder path, valid until store_close. */
const char *store_dir(const struct store *st);

/* Borrow a connection (blocks while all are in use); give it back with store_release. */
sqlite3 *store_acquire(struct store *st);
void store_release(struct store *st, sqlite3 *db);

/* Open one more connection outside the pool, with the pool's settings (a long-lived writer
 * keeps its page cache warm this way). Owned: sqlite3_close(). */
stw_code store_open_extra(struct store *st, sqlite3 **out, stw_error *err);
/* Let db's commits wake st's checkpoint thread (store_open_extra does this itself). */
void store_watch(struct store *st, sqlite3 *db);

/* Prepared statements of one connection kept for reuse: parsing a statement costs more than
 * running most of ours. Entries are keyed by the SQL text's address, so pass string literals.
 * Used by one thread at a time (like its connection). */
#define STORE_CACHE_SLOTS 16
struct stmt_cache {
    sqlite3 *db;
    size_t n;
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
        int lent;
    } slot[STORE_CACHE_SLOTS];
};
void store_cache_init(struct stmt_cache *sc, sqlite3 *db);
void store_cache_clear(struct stmt_cache *sc); /* finalizes every statement */
/* Like store_prepare, but from sc (sc may be NULL: then a fresh statement). Give it back with
 * store_give. A statement already lent out is not lent twice: a second one is prepared. */
stw_code store_take(struct stmt_cache *sc, sqlite3 *db, sqlite3_stmt **stmt, const char *sql,
                    stw_error *err);
/* Reset and return a statement of store_take (finalized when it is not sc's); NULL is fine. */
void store_give(struct stmt_cache *sc, sqlite3_stmt *stmt);
/* store_exec through sc (sql a string literal, compared by address): for statements run on
 * every query (BEGIN, COMMIT, SAVEPOINT ...), which sqlite3_exec would parse each time. A
 * failed COMMIT leaves the transaction open, as with sqlite3_exec; callers roll back. */
stw_code store_exec_cached(struct stmt_cache *sc, sqlite3 *db, const char *sql, stw_error *err);

/* The statement cache of a pooled connection (NULL for one not from st's pool). Borrowed;
 * only the thread that acquired db may use it. */
struct stmt_cache *store_cache(struct store *st, sqlite3 *db);

stw_code store_begin_read(sqlite3 *db, stw_error *err);  /* BEGIN (deferred) */
stw_code store_begin_write(sqlite3 *db, stw_error *err); /* BEGIN IMMEDIATE */
stw_code store_commit(sqlite3 *db, stw_error *err);
void store_rollback(sqlite3 *db); /* harmless when no transaction is open */

/* Prepare sql on db into *stmt (persistent statement). */
stw_code store_prepare(sqlite3 *db, sqlite3_stmt **stmt, const char *sql, stw_error *err);
/* Map the connection's last error to an stw_code: disk full, read-only, I/O error and busy
 * become STW_UNAVAILABLE (503), everything else STW_STORE. */
stw_code store_error(sqlite3 *db, stw_error *err);
/* Execute SQL without results. */
stw_code store_exec(sqlite3 *db, const char *sql, stw_error *err);

/* Bind helper: text or NULL. */
void store_bind_text(sqlite3_stmt *stmt, int idx, const char *s);
/* Column helper: text or NULL (borrowed until the next step/finalize). */
const char *store_col_text(sqlite3_stmt *stmt, int col);

#endif
