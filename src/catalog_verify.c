/* catalog_verify.c - `steward verify-version`: re-derive a published version from the store and
 * compare it with what publish wrote (the catalog module, split off catalog.c along this seam).
 *
 * What is checked, in one pass over the version's chunks in chunk-id byte order (the row order
 * of every file, catalog.h):
 *  - each chunk's hash, recomputed from its stored columns (catalog_chunk_hash), against the
 *    stored hash: a chunk edited in steward.db after ingest shows up here;
 *  - the content hash, recomputed over (chunk id, NUL, recomputed chunk hash), against the
 *    versions row and the manifest; the row count against both;
 *  - vectors.f32: size = chunks x dimension x 4, SHA-256 against the manifest's vectors_sha256,
 *    and row i equal, bit for bit, to the stored vector of the i-th chunk (normalised for cosine
 *    by the same routine publish uses);
 *  - hnsw.faiss when present (or listed): its header's dimension and row count, that FAISS
 *    loads it, and that its stored vectors are exactly vectors.f32.
 * Problems are collected, not returned as errors: the answer is a report. Files are streamed
 * row by row, so memory stays O(dimension) whatever the version's size (the graph check loads
 * the graph, as a query would). */
#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catalog.h"
#include "faiss_bridge.h"
#include "limits.h"
#include "store.h"
#include "util.h"

#define VERIFY_MAX_PROBLEMS  32                 /* listed; the rest are counted */
#define VERIFY_MANIFEST_MAX  (1024 * 1024)      /* a manifest is a few hundred bytes */
#define VERIFY_READ_BUF      (1024 * 1024)      /* stdio buffer for vectors.f32 */

struct report {
    cJSON *problems; /* array of strings */
    size_t count;    /* all problems found, listed or not */
    int oom;
};

static void problem(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct report *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    r->count++;
    if (r->count > VERIFY_MAX_PROBLEMS)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!cJSON_AddItemToArray(r->problems, cJSON_CreateString(msg)))
        r->oom = 1;
}

/* The whole file as a NUL-terminated string (owned), or NULL with errno set. */
static char *slurp(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;

    if (f == NULL)
        return NULL;
    buf = malloc(max + 1);
    if (buf != NULL) {
        len = fread(buf, 1, max + 1, f);
        if (ferror(f) || len > max) {
            free(buf);
            buf = NULL;
            errno = EFBIG;
        } else {
            buf[len] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* -1 when missing or not a non-negative integer */
static double json_count(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 ? v->valuedouble : -1;
}

/* FAISS IndexHNSWFlat files open with the fourcc "IHNf", then d (int32) and ntotal (int64)
 * (faiss/impl/index_write.cpp: write_index_header). Read them before handing the file to
 * FAISS, so that a file of the wrong shape is reported instead of being trusted. */
static int hnsw_header(const char *path, int32_t *d_out, int64_t *n_out)
{
    unsigned char h[16];
    FILE *f = fopen(path, "rb");
    size_t got;

    if (f == NULL)
        return -1;
    got = fread(h, 1, sizeof h, f);
    fclose(f);
    if (got != sizeof h || memcmp(h, "IHNf", 4) != 0)
        return -1;
    memcpy(d_out, h + 4, sizeof *d_out);
    memcpy(n_out, h + 8, sizeof *n_out);
    return 0;
}

static void check_index(struct report *r, const char *dir, const cJSON *man, size_t dim,
                        size_t rows, const char *vec_hash)
{
    char path[4400], hash[STW_HASH_STR_MAX];
    unsigned char digest[SHA256_LEN];
    const cJSON *mix = cJSON_GetObjectItemCaseSensitive(man, "index");
    struct stat sb;
    fx_index *ix = NULL;
    stw_error ferr;
    int32_t d = 0;
    int64_t n = 0;
    int listed = cJSON_IsObject(mix), present;

    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_INDEX_FILE);
    present = stat(path, &sb) == 0;
    if (!present) {
        if (listed)
            problem(r, "the manifest lists an index but %s is missing", CATALOG_INDEX_FILE);
        return;
    }
    if (man != NULL && !listed)
        problem(r, "%s is present but the manifest lists no index", CATALOG_INDEX_FILE);
    if (hnsw_header(path, &d, &n) != 0) {
        problem(r, "%s is not an HNSW index file", CATALOG_INDEX_FILE);
        return;
    }
    if (d < 0 || (size_t)d != dim || n < 0 || (size_t)n != rows) {
        problem(r, "%s has %" PRId64 " rows of dimension %d; the version has %zu of %zu",
                CATALOG_INDEX_FILE, n, (int)d, rows, dim);
        return;
    }
    memset(&ferr, 0, sizeof ferr);
    if (fx_load(path, &ix, &ferr) != STW_OK) {
        problem(r, "%s does not load: %s", CATALOG_INDEX_FILE, ferr.message);
        return;
    }
    if (fx_rows(ix) != rows) {
        problem(r, "%s loads with %zu rows; the version has %zu", CATALOG_INDEX_FILE, fx_rows(ix),
                rows);
    } else if (vec_hash != NULL) {
        util_sha256(fx_vectors(ix), rows * dim * sizeof(float), digest);
        util_hash_str(digest, hash);
        if (strcmp(hash, vec_hash) != 0)
            problem(r, "the vectors inside %s differ from the version's vectors (SHA-256 %s)",
                    CATALOG_INDEX_FILE, hash);
    }
    fx_free(ix);
}

/* cells.u32 (search.c's cell scan): listed in the manifest iff present, its header, a cell
 * number below the count for every row. Its means and radii are measured at load, so a wrong
 * but well-formed assignment only makes the cell scan slower, never an answer wrong. */
static void check_cells(struct report *r, const char *dir, const cJSON *man, size_t rows)
{
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(man, "cells");
    struct catalog_cells_head head;
    char path[4400];
    int listed = cJSON_IsObject(mc);
    FILE *f;
    uint32_t buf[4096];
    size_t seen = 0, bad = 0, got;
    int partial = 0;

    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_CELLS_FILE);
    f = fopen(path, "rb");
    if (f == NULL) {
        if (listed)
            problem(r, "the manifest lists cells but %s is missing", CATALOG_CELLS_FILE);
        return;
    }
    if (man != NULL && !listed)
        problem(r, "%s is present but the manifest lists no cells", CATALOG_CELLS_FILE);
    if (fread(&head, sizeof head, 1, f) != 1 ||
        memcmp(head.magic, CATALOG_CELLS_MAGIC, sizeof head.magic) != 0) {
        problem(r, "%s is not a cells file", CATALOG_CELLS_FILE);
        fclose(f);
        return;
    }
    if (head.rows != rows || head.cells < 2 || head.cells > rows / STW_CELL_ROWS)
        problem(r, "%s has %" PRIu64 " rows in %" PRIu64 " cells; the version has %zu rows",
                CATALOG_CELLS_FILE, head.rows, head.cells, rows);
    else if (listed && json_count(mc, "count") != (double)head.cells)
        problem(r, "%s has %" PRIu64 " cells; the manifest says otherwise", CATALOG_CELLS_FILE,
                head.cells);
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got / sizeof *buf; i++)
            bad += buf[i] >= head.cells;
        seen += got / sizeof *buf;
        partial |= got % sizeof *buf != 0; /* (only at the end: a regular file) */
    }
    fclose(f);
    if (partial)
        problem(r, "%s ends in the middle of a cell number", CATALOG_CELLS_FILE);
    if (seen != rows)
        problem(r, "%s holds %zu rows; the version has %zu", CATALOG_CELLS_FILE, seen, rows);
    if (bad > 0)
        problem(r, "%s gives %zu rows a cell beyond its %" PRIu64, CATALOG_CELLS_FILE, bad,
                head.cells);
}

/* Compare the manifest's identity fields with the product and the versions row. */
static void check_manifest(struct report *r, const cJSON *man, const stw_product *p,
                           const char *version)
{
    const char *s;
    double d;

    if (json_count(man, "format") != 1)
        problem(r, "manifest format is not 1");
    s = json_str(man, "product");
    if (s == NULL || strcmp(s, p->name) != 0)
        problem(r, "manifest product is '%s', expected '%s'", s ? s : "(missing)", p->name);
    s = json_str(man, "version");
    if (s == NULL || strcmp(s, version) != 0)
        problem(r, "manifest version is '%s', expected '%s'", s ? s : "(missing)", version);
    d = json_count(man, "dimension");
    if (d != (double)p->contract.dimension)
        problem(r, "manifest dimension is %.0f, the contract says %zu", d,
                p->contract.dimension);
    s = json_str(man, "metric");
    if (s == NULL || strcmp(s, stw_metric_name(p->contract.metric)) != 0)
        problem(r, "manifest metric is '%s', the contract says '%s'", s ? s : "(missing)",
                stw_metric_name(p->contract.metric));
    s = json_str(man, "embedding_model");
    if (s == NULL || strcmp(s, p->contract.embedding_model) != 0)
        problem(r, "manifest embedding_model is '%s', the contract says '%s'",
                s ? s : "(missing)", p->contract.embedding_model);
}

stw_code catalog_verify(sqlite3 *db, const char *data_dir, const stw_product *p,
                        const char *version, char **json_out, int *ok_out, stw_error *err)
{
    struct report r = {NULL, 0, 0};
    sqlite3_stmt *stmt = NULL;
    stw_version_info v;
    cJSON *man = NULL, *out = NULL;
    char dir[4096], path[4400], content[STW_HASH_STR_MAX], vec_hash[STW_HASH_STR_MAX];
    char *text = NULL, *text2 = NULL, *json = NULL;
    unsigned char digest[SHA256_LEN], chash[SHA256_LEN];
    EVP_MD_CTX *cctx = NULL, *vctx = NULL;
    FILE *vf = NULL;
    float *stored = NULL, *filed = NULL;
    const char *man_vec = NULL, *man_content = NULL;
    size_t dim = p->contract.dimension, rows = 0, bad_rows = 0, bad_hashes = 0, file_rows = 0;
    int64_t vid = 0;
    int step, file_short = 0;
    stw_code rc;

    rc = catalog_version_head(db, p->name, version, &v, &vid, err);
    if (rc != STW_OK)
        return rc;
    if (v.state == STW_DRAFT)
        return stw_errorf(err, STW_CONFLICT, "version_not_published",
                          "version '%s' of product '%s' is a draft; only published or retired"
                          " versions have files to verify",
                          version, p->name);
    if (catalog_version_dir(data_dir, p->name, version, dir, sizeof dir) != 0)
        return stw_errorf(err, STW_INTERNAL, "path_too_long", "data folder path too long");
    r.problems = cJSON_CreateArray();
    cctx = EVP_MD_CTX_new();
    vctx = EVP_MD_CTX_new();
    stored = malloc(dim * sizeof *stored);
    filed = malloc(dim * sizeof *filed);
    if (r.problems == NULL || cctx == NULL || vctx == NULL || stored == NULL || filed == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    EVP_DigestInit_ex(cctx, EVP_sha256(), NULL);
    EVP_DigestInit_ex(vctx, EVP_sha256(), NULL);

    /* manifest */
    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_MANIFEST_FILE);
    text = slurp(path, VERIFY_MANIFEST_MAX);
    if (text == NULL) {
        problem(&r, "cannot read %s: %s", CATALOG_MANIFEST_FILE, strerror(errno));
    } else {
        man = cJSON_Parse(text);
        if (!cJSON_IsObject(man)) {
            problem(&r, "%s is not a JSON object", CATALOG_MANIFEST_FILE);
            cJSON_Delete(man);
            man = NULL;
        } else {
            check_manifest(&r, man, p, version);
            man_vec = json_str(man, "vectors_sha256");
            man_content = json_str(man, "content_hash");
        }
    }

    /* vectors file: its size first, then streamed alongside the chunks */
    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_VECTORS_FILE);
    vf = fopen(path, "rb");
    if (vf == NULL) {
        problem(&r, "cannot open %s: %s", CATALOG_VECTORS_FILE, strerror(errno));
    } else {
        struct stat sb;
        setvbuf(vf, NULL, _IOFBF, VERIFY_READ_BUF);
        if (fstat(fileno(vf), &sb) == 0 && dim > 0 &&
            (uint64_t)sb.st_size != (uint64_t)v.chunks * dim * sizeof(float))
            problem(&r,
                    "%s has %lld bytes; %zu chunks x dimension %zu x 4 bytes = %llu expected",
                    CATALOG_VECTORS_FILE, (long long)sb.st_size, v.chunks, dim,
                    (unsigned long long)v.chunks * dim * sizeof(float));
    }

    /* one pass over the stored chunks in row order */
    rc = store_prepare(db, &stmt,
                       "SELECT chunk_id, hash, text, conf, compartments, provenance, metadata,"
                       " vector FROM chunks WHERE version_id = ?1 ORDER BY chunk_id",
                       err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_int64(stmt, 1, vid);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *cid = store_col_text(stmt, 0);
        const void *blob = sqlite3_column_blob(stmt, 7);
        size_t vbytes = (size_t)sqlite3_column_bytes(stmt, 7);
        int conf = sqlite3_column_int(stmt, 3);
        int vec_ok = blob != NULL && vbytes == dim * sizeof(float);

        memset(chash, 0, sizeof chash); /* stands in when no hash can be computed */
        if (vec_ok)
            memcpy(stored, blob, vbytes);
        else
            problem(&r, "row %zu (chunk '%s'): stored vector has %zu bytes, expected %zu", rows,
                    cid, vbytes, dim * sizeof(float));
        if (stw_conf_name(conf) == NULL)
            problem(&r, "row %zu (chunk '%s'): stored confidentiality %d is not a code", rows,
                    cid, conf);
        if (vec_ok && stw_conf_name(conf) != NULL) {
            rc = catalog_chunk_hash(cid, store_col_text(stmt, 2), conf, store_col_text(stmt, 4),
                                    store_col_text(stmt, 5), store_col_text(stmt, 6), stored,
                                    dim, chash, err);
            if (rc != STW_OK)
                goto done;
            if ((sqlite3_column_bytes(stmt, 1) != SHA256_LEN ||
                 memcmp(sqlite3_column_blob(stmt, 1), chash, SHA256_LEN) != 0) &&
                ++bad_hashes <= 3)
                problem(&r,
                        "row %zu (chunk '%s'): stored chunk hash does not match the stored"
                        " content",
                        rows, cid);
        }
        EVP_DigestUpdate(cctx, cid, strlen(cid) + 1); /* the id and its NUL */
        EVP_DigestUpdate(cctx, chash, SHA256_LEN);
        if (vf != NULL && !file_short) {
            size_t got = fread(filed, 1, dim * sizeof(float), vf);
            EVP_DigestUpdate(vctx, filed, got);
            if (got != dim * sizeof(float)) {
                file_short = 1;
            } else {
                file_rows++;
                if (vec_ok && p->contract.metric == STW_METRIC_COSINE)
                    catalog_row_normalise(stored, dim);
                if (vec_ok && memcmp(stored, filed, dim * sizeof(float)) != 0 &&
                    ++bad_rows <= 3)
                    problem(&r, "row %zu of %s differs from the stored vector of chunk '%s'",
                            rows, CATALOG_VECTORS_FILE, cid);
            }
        }
        rows++;
    }
    if (step != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    if (bad_hashes > 3)
        problem(&r, "%zu chunks in all have a stored hash that does not match their content",
                bad_hashes);
    if (bad_rows > 3)
        problem(&r, "%zu rows in all of %s differ from the stored vectors", bad_rows,
                CATALOG_VECTORS_FILE);
    if (vf != NULL) { /* hash whatever is left, so the file's digest covers all of it */
        size_t got;
        while ((got = fread(filed, 1, dim * sizeof(float), vf)) > 0)
            EVP_DigestUpdate(vctx, filed, got);
        if (ferror(vf))
            problem(&r, "error reading %s", CATALOG_VECTORS_FILE);
        if (file_rows < rows)
            problem(&r, "%s holds %zu whole rows; the store has %zu chunks",
                    CATALOG_VECTORS_FILE, file_rows, rows);
    }
    EVP_DigestFinal_ex(cctx, digest, NULL);
    util_hash_str(digest, content);
    EVP_DigestFinal_ex(vctx, digest, NULL);
    util_hash_str(digest, vec_hash);

    /* the store, the versions row and the manifest must agree */
    if (rows != v.chunks)
        problem(&r, "the store holds %zu chunks; the versions row says %zu", rows, v.chunks);
    if (strcmp(content, v.content_hash) != 0)
        problem(&r, "content hash recomputed from the store is %s; the versions row says %s",
                content, v.content_hash[0] ? v.content_hash : "(none)");
    if (man != NULL) {
        if (json_count(man, "chunks") != (double)rows)
            problem(&r, "manifest chunks is %.0f; the store holds %zu",
                    json_count(man, "chunks"), rows);
        if (man_content == NULL || strcmp(man_content, content) != 0)
            problem(&r, "manifest content_hash is %s; recomputed from the store: %s",
                    man_content ? man_content : "(missing)", content);
        if (vf != NULL && (man_vec == NULL || strcmp(man_vec, vec_hash) != 0))
            problem(&r, "SHA-256 of %s is %s; the manifest says %s", CATALOG_VECTORS_FILE,
                    vec_hash, man_vec ? man_vec : "(missing)");
    }
    /* the graph's vectors against what publish recorded (else the file), so that a damaged
     * vectors.f32 is not blamed on an intact graph */
    check_index(&r, dir, man, dim, rows, man_vec != NULL ? man_vec : vf != NULL ? vec_hash : NULL);
    check_cells(&r, dir, man, rows);

    if (r.count > VERIFY_MAX_PROBLEMS) {
        char more[64];
        snprintf(more, sizeof more, "... and %zu more", r.count - VERIFY_MAX_PROBLEMS);
        cJSON_AddItemToArray(r.problems, cJSON_CreateString(more));
    }
    out = cJSON_CreateObject();
    if (out == NULL || r.oom) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    cJSON_AddBoolToObject(out, "ok", r.count == 0);
    cJSON_AddStringToObject(out, "product", p->name);
    cJSON_AddStringToObject(out, "version", version);
    cJSON_AddStringToObject(out, "state", stw_state_name(v.state));
    cJSON_AddNumberToObject(out, "chunks", (double)rows);
    cJSON_AddStringToObject(out, "content_hash", content);
    cJSON_AddItemToObject(out, "problems", r.problems);
    r.problems = NULL;
    text2 = cJSON_PrintUnformatted(out);
    json = util_strdup(text2); /* the caller frees with free(), not cJSON_free() */
    cJSON_free(text2);
    if (json == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    *json_out = json;
    *ok_out = r.count == 0;
    rc = STW_OK;
done:
    sqlite3_finalize(stmt);
    if (vf != NULL)
        fclose(vf);
    EVP_MD_CTX_free(cctx);
    EVP_MD_CTX_free(vctx);
    free(stored);
    free(filed);
    free(text);
    cJSON_Delete(man);
    cJSON_Delete(out);
    cJSON_Delete(r.problems);
    return rc;
}
