/* search.h - in-memory published versions and entitlement-filtered top-k search.
 *
 * A published version is loaded once (vectors from its vectors.f32, per-row labels and
 * provenance keys from SQLite) into an immutable `vset`, cached for the life of the stw_db.
 * A query turns the caller's grants, the product's suppressions and the request's filter into
 * an allow-set (a bitmap over the version's rows) and scans exactly the allowed rows.
 *
 * Thread: vcache_get may be called from any thread (it takes vc->mu while loading); a vset
 * is immutable once returned and may be searched concurrently without locks. */
#ifndef STW_SEARCH_H
#define STW_SEARCH_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#include "steward.h"

struct vset;

struct vcache {
    pthread_mutex_t mu;
    struct vset **sets; /* guarded by mu */
    size_t n, cap;      /* guarded by mu */
    int no_codes;       /* set before use: versions load without 8-bit codes (sq8 off) */
    int no_walk;        /* set before use: graph versions load without the walk's blocks */
    size_t rows_memory_max; /* set before use: rows files up to this size are read into
                             * memory, larger ones mapped (stw_options) */
};

void vcache_init(struct vcache *vc);
void vcache_free(struct vcache *vc);

/* The loaded version (loading it on first use). Borrowed: valid until vcache_free. */
stw_code vcache_get(struct vcache *vc, sqlite3 *db, const char *data_dir,
                    const stw_product *product, const stw_version_info *v, int64_t version_id,
                    const struct vset **out, stw_error *err);

size_t vset_rows(const struct vset *vs);
/* The row's answer fields ({"labels","metadata","provenance","text"}) in rows.jsonl: 0 and
 * *json, *len borrowed (the rows file, in memory or mapped: not NUL-terminated, valid as long
 * as the vset); 1 if the version has no rows file (ask SQLite); -1 if it is empty.
 * Thread: any. */
int vset_row_json(const struct vset *vs, size_t row, const char **json, size_t *len);
/* Borrowed: the row's source_system (which 0), document_id (1) or subject (2), or NULL. */
const char *vset_row_key(const struct vset *vs, size_t row, int which);
/* Borrowed: the chunk id of row r, valid as long as the vset. */
const char *vset_chunk_id(const struct vset *vs, size_t row);
/* Ask the cache for what the three calls above read of a row: stage 0 its entries in the
 * per-row arrays, stage 1 what those point to (its JSON, chunk id and key strings; stage 1
 * reads the entries). An answer runs stage 0 for all its rows, then stage 1, then reads them,
 * so the rows' misses overlap instead of queueing. Thread: any. */
void vset_prefetch_row(const struct vset *vs, size_t row, int stage);

/* What one request may see in one version (rules 1-5 of the access rule). */
struct access {
    size_t ngrants;
    const stw_grant *grants;           /* grants covering product+purpose (rule 1) */
    size_t nsuppressions;
    const stw_suppression *suppressions;
    const stw_filter *filter;          /* may be NULL */
};

/* One scored row. key: larger is better (similarity, or -distance^2 for l2). */
struct hit {
    float key;
    uint32_t row;
};

/* Planner settings (from stw_options). */
struct plan_opts {
    size_t exact_max_rows;  /* allow-sets up to this size: exact scan */
    double min_selectivity; /* allow-sets below this fraction of the version: exact scan */
    size_t ef, ef_max;      /* HNSW rungs: ef, 2ef, ... up to ef_max, then exact */
    int strategy;           /* enum stw_strategy */
    double two_hop_below;   /* ACORN-1 traversal for allow-sets below this fraction */
    size_t quant_min_rows;  /* scans of at least this many rows: 8-bit first pass; 0 never */
    size_t bin_min_rows;    /* ... and at least this many: a 1-bit pass before it; 0 never */
    double scan_max_share;  /* with the 1-bit pass: allow-sets up to this share are scanned */
    double cells_min_share; /* versions with cells: allow-sets of this share up, the cell scan */
};

/* What the planner did in one version (for explain and metrics; never counts hidden rows). */
struct plan_out {
    const char *strategy; /* static: "exact", "sq8", "sq1", "cells", "hnsw", "hnsw+exact",
                           * "hnsw+sq8", "hnsw+sq1" */
    size_t allowed;       /* |allow-set| */
    size_t scanned;       /* allowed rows whose distance was computed */
    size_t ef;            /* last efSearch used, 0 for exact */
    size_t rejected;      /* rows the graph returned that failed the allow-set re-check */
    size_t rungs;         /* ef doublings after the first graph search */
};

/* Top-k allowed rows of vs for the (already normalised for cosine) query, best first.
 * hits_out must hold k entries; *nhits_out <= k and equals min(k, allowed) unless the
 * graph path was used and could not fill (then the exact fallback fills it). */
stw_code search_version(const struct vset *vs, const struct access *acc,
                        const struct plan_opts *po, const float *query, size_t k,
                        struct hit *hits_out, size_t *nhits_out, struct plan_out *out,
                        stw_error *err);

/* Bytes of the version's HNSW graph (0 without one), and whether it has one. */
size_t search_graph_bytes(const struct vset *vs);
int search_has_graph(const struct vset *vs);
/* Test hook (see fx_test_inject_row): the graph of vs returns `row` first on every search. */
void search_test_inject(const struct vset *vs, int64_t row);

/* The score reported to callers for a hit of this metric (cosine/ip similarity, l2 distance). */
double search_score(int metric, float key);

#endif
