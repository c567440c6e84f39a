/* faiss_bridge.h - the C face of the one C++ file: FAISS HNSW graphs for published versions.
 *
 * FAISS (Debian's 1.7.3) builds the graph and owns the file format; its distances are swapped
 * for SIMD kernels (an IndexFlat subclass as HNSW storage) and the filtered level-0 search is
 * our own routine over FAISS's graph arrays, with a per-query ef, the allow-set as a bitmap,
 * and a visit budget. No C++ exception crosses this interface.
 *
 * Row ids are the version's dense row numbers 0..n-1 (no IndexIDMap: it cannot filter). */
#ifndef STW_FAISS_BRIDGE_H
#define STW_FAISS_BRIDGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "distance.h"

#include "steward.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fx_index fx_index;

/* Build an HNSW graph over n vectors of dimension d (row-major). ip: 1 for inner product
 * (cosine vectors must already be normalised), 0 for L2. Uses OpenMP threads.
 * Thread: any, but not concurrently with other builds. Owned: fx_free(). */
stw_code fx_build(const float *vecs, size_t n, size_t d, int ip, size_t m,
                  size_t ef_construction, fx_index **out, stw_error *err);
/* Write as a standard IndexHNSWFlat file. Thread: any; read-only on ix. */
stw_code fx_save(const fx_index *ix, const char *path, stw_error *err);
/* Read a file written by fx_save. Owned: fx_free(). */
stw_code fx_load(const char *path, fx_index **out, stw_error *err);
void fx_free(fx_index *ix);

/* Partition n vectors (row-major, dimension d) into `cells` cells by k-means (FAISS's
 * Clustering, L2, 10 iterations over at most 64 sampled rows a cell, its fixed seed: the same
 * rows give the same cells), and assign every row its nearest centre: cell[r] in 0..cells-1.
 * Any assignment is correct for search.c's cell bounds (they are measured from the rows at
 * load); a good one makes them tight. Uses OpenMP threads and BLAS. Thread: as fx_build. */
stw_code fx_partition(const float *vecs, size_t n, size_t d, size_t cells, uint32_t *cell,
                      stw_error *err);

/* Borrowed: the index's own copy of the vectors (n * d floats), valid until fx_free. */
const float *fx_vectors(const fx_index *ix);
size_t fx_rows(const fx_index *ix);
/* Bytes used by the graph (neighbour lists, levels, offsets), not counting vectors. */
size_t fx_graph_bytes(const fx_index *ix);

/* The 8-bit records of search.c's quantised scan, for a walk that scores rows on them
 * instead of on their floats (a quarter of the bytes per visited row), then re-scores its
 * best max(3k, 24) by them in float. A record is dim codes (int8, the row minus the
 * version's mean, over scale), then struct fx_qtail. qc is the query quantised the same way,
 * offset by 128 (uint8); qscale its scale. l2: the key is 2 q.x - sqnorm (centred). */
struct fx_qtail {
    float scale;
    int32_t sum;
    float sqnorm;
};

/* The key of one record against qc (higher is better): q.x' for ip, 2 q.x' - |x'|^2 for l2
 * (centred: |q - x|^2 less |q|^2, the same for every row). The quantised scan ranks by it and
 * the walk by its negation. */
static inline float fx_qrec_key(const uint8_t *rec, size_t d, const uint8_t *qc, float qscale,
                                int l2)
{
    struct fx_qtail t;
    int32_t dot;
    float ip;

    memcpy(&t, rec + d, sizeof t);
    dot = dist_dot_u8s8(qc, (const int8_t *)rec, d) - 128 * t.sum;
    ip = (float)dot * qscale * t.scale;
    return l2 ? 2.0f * ip - t.sqnorm : ip;
}

/* The walk's own layout of the graph's bottom level: one block per row, in row order, of the
 * row's 8-bit record (stride bytes; search.c keeps them in label order for its scans, at
 * rows + pos[r] * stride) followed by its level-0 neighbour list (the graph's 2M int32 slots,
 * -1 after the last). A walk then reads a row's code and, when it expands the row, its
 * neighbours from one place, where the label-ordered records and FAISS's arrays cost three
 * dependent cache misses more (pos[], the row's list offset, then its list). Built at load.
 * Owned: fx_walk_free(). fx_search walks in float, on FAISS's arrays, when codes or their
 * walk are NULL. */
typedef struct fx_walk fx_walk;
stw_code fx_walk_build(const fx_index *ix, const uint8_t *rows, const uint32_t *pos,
                       size_t stride, fx_walk **out, stw_error *err);
void fx_walk_free(fx_walk *w);

typedef struct fx_codes {
    const fx_walk *walk;
    const uint8_t *qc;
    float qscale;
    int l2;
} fx_codes;

/* Filtered k-NN over the graph. allow: bitmap over rows (bit r of word r/64); NULL = all.
 * ef: beam width (raised to k). codes: NULL to score every row in float; else the walk scores
 * on the 8-bit records and re-scores its best max(3k, 24) in float (keys_out are exact either
 * way). visit_limit: stop and report *exhausted = 1 once this many rows had their distance
 * computed (0 = no limit); *allowed_seen_out counts the allowed rows among them (what explain
 * may show: never a count of rows the caller cannot see). keys_out: larger is better
 * (similarity for ip, -squared distance for l2). Returns up to k rows in *found_out, best
 * first.
 * Thread: any, concurrently with other searches; read-only on ix. */
stw_code fx_search(const fx_index *ix, const float *query, size_t k, size_t ef,
                   const uint64_t *allow, size_t visit_limit, float *keys_out,
                   int64_t *rows_out, size_t *found_out, size_t *visited_out,
                   size_t *allowed_seen_out, int two_hop, int *exhausted,
                   const fx_codes *codes, stw_error *err);

/* Baseline for benchmarks: FAISS's own IndexHNSW::search (member efSearch, default 16) with
 * an IDSelectorBitmap over allow (NULL: unfiltered). Same output conventions as fx_search.
 * Thread: any, concurrently with other searches. */
stw_code fx_search_faiss(const fx_index *ix, const float *query, size_t k, const uint64_t *allow,
                         float *keys_out, int64_t *rows_out, size_t *found_out, stw_error *err);

/* Benchmarks: set the index's member efSearch, which fx_search_faiss uses (FAISS sizes its
 * queue from the member, so a per-call value could not raise it). Thread: only while no
 * fx_search_faiss runs on ix. */
void fx_set_faiss_ef(fx_index *ix, size_t ef);

/* Threads FAISS's OpenMP regions may use in this process (builds, fx_search_faiss).
 * Thread: call before searches start. */
void fx_set_threads(int n);

/* Test hook: make every fx_search on ix also return `row` (whatever the allow-set) as its
 * best hit, so tests can prove the caller re-checks rows. -1 turns it off. Thread: tests only. */
void fx_test_inject_row(fx_index *ix, int64_t row);

#ifdef __cplusplus
}
#endif
#endif
