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
};

/* A version's files, built in a temporary folder, waiting for the commit. */
struct publish_stage {
    int64_t version_id;
    size_t chunks;
    char content_hash[STW_HASH_STR_MAX];
    int has_index, tmp_made;
    double build_seconds;
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
/* Remove the staged folder if it was not committed. */
void catalog_publish_abort(struct publish_stage *st);

stw_code catalog_retire(sqlite3 *db, const char *product, const char *version,
                        stw_version_info *out, stw_error *err);

/* Resolve a version rule to a published version: 404 if none, 410 if retired. */
stw_code catalog_resolve(sqlite3 *db, const stw_product_ref *ref, stw_version_info *out,
                         int64_t *id_out, stw_error *err);

/* Remove temporary publish folders and folders of versions that are not published or
 * retired (left by a crash between rename and commit). Best effort. */
void catalog_cleanup(sqlite3 *db, const char *data_dir);

/* "<data_dir>/versions/<product>/<version>" into out; -1 if it does not fit. */
int catalog_version_dir(const char *data_dir, const char *product, const char *version,
                        char *out, size_t cap);

#endif
