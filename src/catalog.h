/* catalog.h - data products, their versions and chunks, publish and version rules.
 *
 * A version is draft (chunks being added) -> published (immutable files under
 * versions/<product>/<version>/, queryable) -> retired (not served; metadata kept).
 * Rows of a published version are its chunks in chunk-id byte order: row i of
 * vectors.f32 is the i-th chunk id. Functions taking a sqlite3* run inside the caller's
 * transaction; the write functions need a write transaction. */
#ifndef STW_CATALOG_H
#define STW_CATALOG_H

#include <sqlite3.h>
#include <stdint.h>

#include "steward.h"

#define CATALOG_VECTORS_FILE  "vectors.f32"
#define CATALOG_MANIFEST_FILE "manifest.json"
#define CATALOG_INDEX_FILE    "hnsw.faiss"
/* what a query returns per row, one JSON object per line in row order, and the byte offset of
 * each line (n + 1 little-endian uint64): served by pread, never through SQLite */
#define CATALOG_ROWS_FILE     "rows.jsonl"
#define CATALOG_ROWS_INDEX    "rows.idx"
/* the k-means cell of every row (search.c's cell scan): struct catalog_cells_head, then n
 * uint32 cell numbers in row order, in the host's byte order (little-endian on x86-64, as
 * vectors.f32); 2 <= cells <= rows / STW_CELL_ROWS */
#define CATALOG_CELLS_FILE    "cells.u32"
#define CATALOG_CELLS_MAGIC   "STWCELL1"

struct catalog_cells_head {
    char magic[8];
    uint64_t rows, cells;
};
#define CATALOG_PUBLISH_LOCK  ".publish.lock" /* in versions/: see catalog_cleanup */

stw_code catalog_product_insert(sqlite3 *db, const stw_product *p, stw_error *err);
/* Fills *out (its description/terms are owned: free with stw_products_free(out, 1) semantics,
 * i.e. catalog_product_clear()). 404 unknown_product. */
stw_code catalog_product_get(sqlite3 *db, const char *name, stw_product *out, stw_error *err);
void catalog_product_clear(stw_product *p);
stw_code catalog_product_list(sqlite3 *db, stw_product **out, size_t *n_out, stw_error *err);

stw_code catalog_version_insert(sqlite3 *db, const char *product, const char *version,
                                stw_version_info *out, stw_error *err);
/* 404 unknown_version. id_out may be NULL. */
stw_code catalog_version_get(sqlite3 *db, const char *product, const char *version,
                             stw_version_info *out, int64_t *id_out, stw_error *err);
/* Same as catalog_version_get but out->chunks of a draft is 0, not its live count (counting
 * walks every chunk of the draft: O(n) per call). For write paths that need only the state. */
stw_code catalog_version_head(sqlite3 *db, const char *product, const char *version,
                              stw_version_info *out, int64_t *id_out, stw_error *err);
stw_code catalog_version_list(sqlite3 *db, const char *product, stw_version_info **out,
                              size_t *n_out, stw_error *err);

/* Validate and add a batch to draft version_id of product p (all or nothing is up to the
 * caller's transaction). */
stw_code catalog_chunks_add(sqlite3 *db, const stw_product *p, const stw_version_info *v,
                            int64_t version_id, const stw_chunk *chunks, size_t n,
                            size_t *accepted, size_t *unchanged, stw_error *err);

/* Publish settings (from stw_options). */
struct publish_opts {
    size_t hnsw_min_rows; /* versions with at least this many rows get an HNSW graph; 0: never */
    size_t hnsw_m;
    size_t hnsw_ef_construction;
    size_t cells_max; /* graph versions get min(this, rows / STW_CELL_ROWS) k-means cells; 0 none */
};

/* A version's files, built in a temporary folder, waiting for the commit. */
struct publish_stage {
    int64_t version_id;
    size_t chunks;
    char content_hash[STW_HASH_STR_MAX];
    int has_index, tmp_made;
    int locked, lock_fd; /* shared lock on versions/.publish.lock while staging + committing */
    double build_seconds;
    size_t cells; /* k-means cells written (0: none) */
    double cells_seconds;
    char tmp_dir[4300], final_dir[4096], parent[4096];
};

/* Publish, step 1 (no write lock needed; run in a read transaction): validate against the
 * contract (422 listing every problem) and write vectors, HNSW graph and manifest into a
 * fsynced temporary folder. On failure nothing is left behind. */
stw_code catalog_publish_stage(sqlite3 *db, const char *data_dir, const stw_product *p,
                               const char *version, const struct publish_opts *o,
                               struct publish_stage *st, stw_error *err);
/* Publish, step 2 (in a write transaction): check the draft did not change since the stage
 * (409 otherwise), rename the folder into place and mark the version published. */
stw_code catalog_publish_commit(sqlite3 *db, const stw_product *p, const char *version,
                                struct publish_stage *st, stw_version_info *out, stw_error *err);
/* Remove the staged folder if it was not committed, and release the publish lock. Call it
 * after every stage, committed or not (a no-op on a zeroed struct). */
void catalog_publish_abort(struct publish_stage *st);

stw_code catalog_retire(sqlite3 *db, const char *product, const char *version,
                        stw_version_info *out, stw_error *err);

/* Resolve a version rule to a published version: 404 if none, 410 if retired. */
stw_code catalog_resolve(sqlite3 *db, const stw_product_ref *ref, stw_version_info *out,
                         int64_t *id_out, stw_error *err);

/* Remove temporary publish folders and folders of versions that are not published or
 * retired (left by a crash between rename and commit). Best effort. Publishers hold a shared
 * flock on versions/.publish.lock from before their temporary folder exists until after their
 * commit; cleanup runs only if it gets the lock exclusively, so a process opening the store
 * (`steward ingest`, `verify-version`) never removes the folder of a publish in flight in
 * another process. A lock held by a killed process is released by the kernel. */
void catalog_cleanup(sqlite3 *db, const char *data_dir);

/* The chunk hash (docs/data-layout.md) from a chunk's canonical parts: compartments, provenance
 * and metadata are the stored canonical JSON texts; vec is the vector as sent (dim floats). */
stw_code catalog_chunk_hash(const char *id, const char *text, int conf,
                            const char *compartments, const char *provenance,
                            const char *metadata, const float *vec, size_t dim,
                            unsigned char out[32], stw_error *err);
/* Scale a cosine row to unit length in place (norm > 0, checked at ingest). Publish and
 * verify share it so that both produce the same bits. */
void catalog_row_normalise(float *row, size_t dim);

/* Check a published or retired version's files against the store; see catalog_verify.c.
 * Runs in the caller's read transaction. *json_out (owned, free()) is
 * {"ok":bool,"product","version","chunks","content_hash","problems":[...]} and *ok_out is 1
 * when problems is empty. 409 version_not_published for a draft, 404 unknown version. */
stw_code catalog_verify(sqlite3 *db, const char *data_dir, const stw_product *p,
                        const char *version, char **json_out, int *ok_out, stw_error *err);

/* "<data_dir>/versions/<product>/<version>" into out; -1 if it does not fit. */
int catalog_version_dir(const char *data_dir, const char *product, const char *version,
                        char *out, size_t cap);

#endif
