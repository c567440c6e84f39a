/* catalog.c - products, versions, chunk batches, publish, retire, version rules.
 *
 * Invariants: a chunk is stored only if it passed the product's contract (dimension, finite
 * values, non-zero norm for cosine, labels present and from the contract's vocabulary,
 * required provenance present); a published version's folder is written completely in a
 * temporary folder, fsynced, and renamed before the state flips in the same transaction;
 * chunk and content hashes follow the canonical forms of docs/data-layout.md. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "catalog.h"
#include "faiss_bridge.h"
#include "limits.h"
#include "store.h"
#include "util.h"

/* a draft's chunk count is live; a published version's is frozen at publish */
#define VERSION_COLS                                                                           \
    "id, product, name, state,"                                                                \
    " CASE state WHEN 0 THEN (SELECT count(*) FROM chunks c WHERE c.version_id = versions.id)" \
    " ELSE chunks END, content_hash, created_ms, published_ms, retired_ms"

/* ---- contract JSON ------------------------------------------------------------------------ */

static char *contract_json(const stw_contract *c)
{
    cJSON *o = cJSON_CreateObject(), *a;
    char *out;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "embedding_model", c->embedding_model);
    cJSON_AddNumberToObject(o, "dimension", (double)c->dimension);
    cJSON_AddStringToObject(o, "metric", stw_metric_name(c->metric));
    a = cJSON_AddArrayToObject(o, "compartments");
    for (size_t i = 0; a && i < c->ncompartments; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(c->compartments[i]));
    a = cJSON_AddArrayToObject(o, "provenance_required");
    for (size_t i = 0; a && i < c->nprovenance_required; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(c->provenance_required[i]));
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

static void contract_parse(const char *json, stw_contract *c)
{
    cJSON *o = cJSON_Parse(json), *it;
    const cJSON *v;

    memset(c, 0, sizeof *c);
    v = cJSON_GetObjectItemCaseSensitive(o, "embedding_model");
    if (cJSON_IsString(v))
        snprintf(c->embedding_model, sizeof c->embedding_model, "%s", v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(o, "dimension");
    if (cJSON_IsNumber(v))
        c->dimension = (size_t)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(o, "metric");
    c->metric = cJSON_IsString(v) ? stw_metric_parse(v->valuestring) : 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "compartments"))
    {
        if (cJSON_IsString(it) && c->ncompartments < STW_MAX_LABELS)
            snprintf(c->compartments[c->ncompartments++], STW_LABEL_MAX + 1, "%s",
                     it->valuestring);
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "provenance_required"))
    {
        if (cJSON_IsString(it) && c->nprovenance_required < STW_MAX_PROV_REQ)
            snprintf(c->provenance_required[c->nprovenance_required++], STW_LABEL_MAX + 1, "%s",
                     it->valuestring);
    }
    cJSON_Delete(o);
}

/* ---- products ----------------------------------------------------------------------------- */

stw_code catalog_product_insert(sqlite3 *db, const stw_product *p, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    char *contract = NULL;
    stw_code rc;

    contract = contract_json(&p->contract);
    if (contract == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    rc = store_prepare(db, &stmt,
                       "INSERT INTO products(name, domain, owner, description, terms,"
                       " deidentified, contract, created_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"
                       " ON CONFLICT(name) DO NOTHING",
                       err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_text(stmt, 1, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, p->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, p->owner, -1, SQLITE_STATIC);
    store_bind_text(stmt, 4, p->description);
    store_bind_text(stmt, 5, p->terms);
    sqlite3_bind_int(stmt, 6, p->deidentified ? 1 : 0);
    sqlite3_bind_text(stmt, 7, contract, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 8, util_now_ms());
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    else if (sqlite3_changes(db) == 0)
        rc = stw_errorf(err, STW_CONFLICT, "product_exists", "product '%s' already exists",
                        p->name);
done:
    sqlite3_finalize(stmt);
    cJSON_free(contract);
    return rc;
}

#define PRODUCT_COLS                                                                           \
    "p.name, p.domain, p.owner, p.description, p.terms, p.deidentified, p.contract,"          \
    " p.created_ms, (SELECT count(*) FROM versions v WHERE v.product = p.name),"              \
    " (SELECT v.name FROM versions v WHERE v.product = p.name AND v.state = 1"                \
    "  ORDER BY v.published_ms DESC, v.id DESC LIMIT 1)"

static void product_from_row(sqlite3_stmt *stmt, stw_product *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", store_col_text(stmt, 0));
    snprintf(p->domain, sizeof p->domain, "%s", store_col_text(stmt, 1));
    snprintf(p->owner, sizeof p->owner, "%s", store_col_text(stmt, 2));
    p->description = util_strdup(store_col_text(stmt, 3));
    p->terms = util_strdup(store_col_text(stmt, 4));
    p->deidentified = sqlite3_column_int(stmt, 5);
    contract_parse(store_col_text(stmt, 6), &p->contract);
    p->created_ms = sqlite3_column_int64(stmt, 7);
    p->nversions = (size_t)sqlite3_column_int64(stmt, 8);
    if (store_col_text(stmt, 9))
        snprintf(p->latest, sizeof p->latest, "%s", store_col_text(stmt, 9));
}

void catalog_product_clear(stw_product *p)
{
    if (p == NULL)
        return;
    free(p->description);
    free(p->terms);
    p->description = p->terms = NULL;
}

stw_code catalog_product_get(sqlite3 *db, const char *name, stw_product *out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt, "SELECT " PRODUCT_COLS " FROM products p WHERE p.name = ?1",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW: product_from_row(stmt, out); break;
    case SQLITE_DONE:
        rc = stw_errorf(err, STW_NOT_FOUND, "unknown_product", "no product '%s'", name);
        break;
    default: rc = store_error(db, err); break;
    }
    sqlite3_finalize(stmt);
    return rc;
}

stw_code catalog_product_list(sqlite3 *db, stw_product **out, size_t *n_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_product *arr = NULL;
    size_t n = 0, cap = 0;
    int step;
    stw_code rc;

    rc = store_prepare(db, &stmt, "SELECT " PRODUCT_COLS " FROM products p ORDER BY p.name",
                       err);
    if (rc != STW_OK)
        return rc;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            stw_product *np = realloc(arr, ncap * sizeof *np);
            if (np == NULL) {
                stw_products_free(arr, n);
                sqlite3_finalize(stmt);
                return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            }
            arr = np;
            cap = ncap;
        }
        product_from_row(stmt, &arr[n++]);
    }
    if (step != SQLITE_DONE) {
        rc = store_error(db, err);
        stw_products_free(arr, n);
        sqlite3_finalize(stmt);
        return rc;
    }
    sqlite3_finalize(stmt);
    *out = arr;
    *n_out = n;
    return STW_OK;
}

void stw_products_free(stw_product *p, size_t n)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        catalog_product_clear(&p[i]);
    free(p);
}

/* ---- versions ----------------------------------------------------------------------------- */

static void version_from_row(sqlite3_stmt *stmt, stw_version_info *v, int64_t *id_out)
{
    memset(v, 0, sizeof *v);
    if (id_out)
        *id_out = sqlite3_column_int64(stmt, 0);
    snprintf(v->product, sizeof v->product, "%s", store_col_text(stmt, 1));
    snprintf(v->name, sizeof v->name, "%s", store_col_text(stmt, 2));
    v->state = sqlite3_column_int(stmt, 3);
    v->chunks = (size_t)sqlite3_column_int64(stmt, 4);
    if (store_col_text(stmt, 5))
        snprintf(v->content_hash, sizeof v->content_hash, "%s", store_col_text(stmt, 5));
    v->created_ms = sqlite3_column_int64(stmt, 6);
    v->published_ms = sqlite3_column_type(stmt, 7) == SQLITE_NULL ? STW_TIME_NONE
                                                                  : sqlite3_column_int64(stmt, 7);
    v->retired_ms = sqlite3_column_type(stmt, 8) == SQLITE_NULL ? STW_TIME_NONE
                                                                : sqlite3_column_int64(stmt, 8);
}

stw_code catalog_version_insert(sqlite3 *db, const char *product, const char *version,
                                stw_version_info *out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "INSERT INTO versions(product, name, state, created_ms)"
                       " VALUES (?1, ?2, 0, ?3) ON CONFLICT(product, name) DO NOTHING",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, product, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, version, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, util_now_ms());
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    else if (sqlite3_changes(db) == 0)
        rc = stw_errorf(err, STW_CONFLICT, "version_exists",
                        "version '%s' of product '%s' already exists", version, product);
    sqlite3_finalize(stmt);
    if (rc == STW_OK)
        rc = catalog_version_get(db, product, version, out, NULL, err);
    return rc;
}

/* The same columns without a draft's live count (which walks all its chunks). */
#define VERSION_COLS_FROZEN                                                                    \
    "id, product, name, state, chunks, content_hash, created_ms, published_ms, retired_ms"

static stw_code version_select(sqlite3 *db, const char *sql, const char *product,
                               const char *version, stw_version_info *out, int64_t *id_out,
                               stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt, sql, err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, product, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, version, -1, SQLITE_STATIC);
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW: version_from_row(stmt, out, id_out); break;
    case SQLITE_DONE:
        rc = stw_errorf(err, STW_NOT_FOUND, "unknown_version",
                        "product '%s' has no version '%s'", product, version);
        break;
    default: rc = store_error(db, err); break;
    }
    sqlite3_finalize(stmt);
    return rc;
}

stw_code catalog_version_get(sqlite3 *db, const char *product, const char *version,
                             stw_version_info *out, int64_t *id_out, stw_error *err)
{
    return version_select(db,
                          "SELECT " VERSION_COLS " FROM versions WHERE product = ?1 AND name = ?2",
                          product, version, out, id_out, err);
}

stw_code catalog_version_head(sqlite3 *db, const char *product, const char *version,
                              stw_version_info *out, int64_t *id_out, stw_error *err)
{
    return version_select(
        db, "SELECT " VERSION_COLS_FROZEN " FROM versions WHERE product = ?1 AND name = ?2",
        product, version, out, id_out, err);
}

stw_code catalog_version_list(sqlite3 *db, const char *product, stw_version_info **out,
                              size_t *n_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_version_info *arr = NULL;
    size_t n = 0, cap = 0;
    int step;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "SELECT " VERSION_COLS " FROM versions WHERE product = ?1 ORDER BY id",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, product, -1, SQLITE_STATIC);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            stw_version_info *np = realloc(arr, ncap * sizeof *np);
            if (np == NULL) {
                free(arr);
                sqlite3_finalize(stmt);
                return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            }
            arr = np;
            cap = ncap;
        }
        version_from_row(stmt, &arr[n++], NULL);
    }
    if (step != SQLITE_DONE) {
        rc = store_error(db, err);
        free(arr);
        sqlite3_finalize(stmt);
        return rc;
    }
    sqlite3_finalize(stmt);
    *out = arr;
    *n_out = n;
    return STW_OK;
}

/* ---- chunks ------------------------------------------------------------------------------- */

/* Validated, canonical form of one chunk, ready to store. The vector is stored as sent (the
 * caller's buffer is bound directly); cosine rows are normalised once, at publish. */
struct chunk_row {
    char *compartments; /* JSON array, sorted, no duplicates */
    char *provenance;   /* canonical JSON object */
    char *metadata;     /* canonical JSON object */
    unsigned char hash[SHA256_LEN];
};

static void chunk_row_clear(struct chunk_row *r)
{
    free(r->compartments);
    free(r->provenance);
    free(r->metadata);
    memset(r, 0, sizeof *r);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The chunk hash (docs/data-layout.md): SHA-256 of the canonical JSON object
 *   {"compartments":C,"confidentiality":"N","id":ID,"metadata":M,"provenance":P,"text":T,
 *    "vector_sha256":"<hex SHA-256 of the dim raw float32 values as sent>"}
 * keys in byte order, no whitespace. C, M and P are the stored canonical forms and are copied
 * as they are: cJSON prints a parsed canonical form back to the same bytes, so this equals
 * printing the whole object through cJSON (what the first implementation did), at a fraction
 * of the cost. Used at ingest and again by catalog_verify on the stored columns. */
stw_code catalog_chunk_hash(const char *id, const char *text, int conf,
                            const char *compartments, const char *provenance,
                            const char *metadata, const float *vec, size_t dim,
                            unsigned char out[SHA256_LEN], stw_error *err)
{
    struct util_buf b = {NULL, 0, 0, 0};
    unsigned char vhash[SHA256_LEN];
    char vhex[2 * SHA256_LEN + 1];
    const char *cname = stw_conf_name(conf);

    if (cname == NULL)
        return stw_errorf(err, STW_INTERNAL, "bad_label", "confidentiality %d is not a code",
                          conf);
    util_sha256(vec, dim * sizeof(float), vhash);
    util_hex(vhash, SHA256_LEN, vhex);
    util_buf_str(&b, "{\"compartments\":");
    util_buf_str(&b, compartments);
    util_buf_str(&b, ",\"confidentiality\":\"");
    util_buf_str(&b, cname);
    util_buf_str(&b, "\",\"id\":");
    util_buf_json_string(&b, id);
    util_buf_str(&b, ",\"metadata\":");
    util_buf_str(&b, metadata);
    util_buf_str(&b, ",\"provenance\":");
    util_buf_str(&b, provenance);
    util_buf_str(&b, ",\"text\":");
    util_buf_json_string(&b, text);
    util_buf_str(&b, ",\"vector_sha256\":\"");
    util_buf_str(&b, vhex);
    util_buf_str(&b, "\"}");
    if (b.oom) {
        free(b.p);
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    }
    util_sha256(b.p, b.len, out);
    free(b.p);
    return STW_OK;
}

/* Canonical form of a JSON object field into *out (owned). NULL json gives "{}". */
static stw_code object_canon(const char *json, size_t idx, const char *field, char **out,
                             stw_error *err)
{
    const char *s = json;
    cJSON *o;

    if (json == NULL) {
        *out = util_strdup("{}");
        return *out != NULL ? STW_OK : stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    }
    if (strlen(json) > STW_MAX_JSON_FIELD_BYTES)
        return stw_errorf(err, STW_INVALID, "field_too_large", "chunks[%zu].%s is over %u bytes",
                          idx, field, STW_MAX_JSON_FIELD_BYTES);
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    /* one parse: the canonical form of anything starting with '{' that parses is an object */
    *out = *s == '{' ? util_canonical_json(json) : NULL;
    if (*out != NULL)
        return STW_OK;
    o = *s == '{' ? cJSON_Parse(json) : NULL; /* failure path only: invalid, or out of memory? */
    if (o != NULL) {
        cJSON_Delete(o);
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    }
    return stw_errorf(err, STW_INVALID, "wrong_type", "chunks[%zu].%s must be an object", idx,
                      field);
}

static stw_code validate_chunk(const stw_contract *ct, const stw_chunk *c, size_t idx,
                               struct chunk_row *row, stw_error *err)
{
    const char *comps[STW_MAX_LABELS];
    size_t nc = 0;
    double norm = 0;
    cJSON *prov = NULL;
    struct util_buf arr = {NULL, 0, 0, 0};
    stw_code rc = STW_OK;

    memset(row, 0, sizeof *row);
    if (c->id == NULL || c->id[0] == '\0' || strlen(c->id) > STW_ID_MAX ||
        !util_valid_text(c->id, strlen(c->id)) || strpbrk(c->id, "\t\r\n") != NULL)
        return stw_errorf(err, STW_INVALID, "invalid_chunk_id",
                          "chunks[%zu].id must be a string of 1..%d printable bytes", idx,
                          STW_ID_MAX);
    if (c->text == NULL)
        return stw_errorf(err, STW_INVALID, "missing_field", "chunks[%zu].text is required",
                          idx);
    if (strlen(c->text) > STW_MAX_TEXT_BYTES)
        return stw_errorf(err, STW_INVALID, "field_too_large",
                          "chunks[%zu].text is over %u bytes", idx, STW_MAX_TEXT_BYTES);
    if (c->vector == NULL)
        return stw_errorf(err, STW_INVALID, "missing_field", "chunks[%zu].vector is required",
                          idx);
    if (c->dim != ct->dimension)
        return stw_errorf(err, STW_INVALID, "wrong_dimension",
                          "chunks[%zu].vector has dimension %zu, the contract says %zu", idx,
                          c->dim, ct->dimension);
    for (size_t i = 0; i < c->dim; i++) {
        if (!isfinite(c->vector[i]))
            return stw_errorf(err, STW_INVALID, "not_finite",
                              "chunks[%zu].vector[%zu] is not a finite number", idx, i);
        norm += (double)c->vector[i] * c->vector[i];
    }
    if (ct->metric == STW_METRIC_COSINE && !(norm > 0))
        return stw_errorf(err, STW_INVALID, "zero_vector",
                          "chunks[%zu].vector has zero norm (metric cosine)", idx);
    if (c->confidentiality < STW_CONF_U || c->confidentiality > STW_CONF_V)
        return stw_errorf(err, STW_INVALID, "missing_labels",
                          "chunks[%zu].labels.confidentiality is required (one of U L M N R V)",
                          idx);
    if (c->ncompartments > STW_MAX_LABELS)
        return stw_errorf(err, STW_INVALID, "too_many_labels",
                          "chunks[%zu].labels.compartments has more than %d labels", idx,
                          STW_MAX_LABELS);
    for (size_t i = 0; i < c->ncompartments; i++) {
        size_t j;
        if (c->compartments[i] == NULL)
            return stw_errorf(err, STW_INVALID, "wrong_type",
                              "chunks[%zu].labels.compartments[%zu] must be a string", idx, i);
        for (j = 0; j < ct->ncompartments; j++)
            if (strcmp(ct->compartments[j], c->compartments[i]) == 0)
                break;
        if (j == ct->ncompartments)
            return stw_errorf(err, STW_INVALID, "unknown_compartment",
                              "chunks[%zu].labels.compartments[%zu] '%s' is not in the product's"
                              " contract",
                              idx, i, c->compartments[i]);
        for (j = 0; j < nc; j++)
            if (strcmp(comps[j], c->compartments[i]) == 0)
                break;
        if (j == nc)
            comps[nc++] = c->compartments[i];
    }
    qsort(comps, nc, sizeof comps[0], cmp_str);

    rc = object_canon(c->provenance_json, idx, "provenance", &row->provenance, err);
    if (rc == STW_OK)
        rc = object_canon(c->metadata_json, idx, "metadata", &row->metadata, err);
    if (rc != STW_OK)
        goto fail;
    if (ct->nprovenance_required > 0) {
        prov = cJSON_Parse(row->provenance);
        if (prov == NULL) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < ct->nprovenance_required; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(prov, ct->provenance_required[i]);
        if (f == NULL || cJSON_IsNull(f) || (cJSON_IsString(f) && f->valuestring[0] == '\0')) {
            rc = stw_errorf(err, STW_INVALID, "missing_provenance",
                            "chunks[%zu].provenance.%s is required by the product's contract",
                            idx, ct->provenance_required[i]);
            goto fail;
        }
    }
    /* the sorted labels as cJSON would print the array: ["HIV","PSY"], [] when none */
    util_buf_str(&arr, "[");
    for (size_t i = 0; i < nc; i++) {
        if (i > 0)
            util_buf_str(&arr, ",");
        util_buf_json_string(&arr, comps[i]);
    }
    util_buf_str(&arr, "]");
    if (arr.oom) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto fail;
    }
    row->compartments = arr.p;
    arr.p = NULL;
    rc = catalog_chunk_hash(c->id, c->text, c->confidentiality, row->compartments,
                            row->provenance, row->metadata, c->vector, c->dim, row->hash, err);
    if (rc != STW_OK)
        goto fail;
    cJSON_Delete(prov);
    return STW_OK;
fail:
    free(arr.p);
    cJSON_Delete(prov);
    chunk_row_clear(row);
    return rc;
}

stw_code catalog_chunks_add(sqlite3 *db, const stw_product *p, const stw_version_info *v,
                            int64_t version_id, const stw_chunk *chunks, size_t n,
                            size_t *accepted, size_t *unchanged, stw_error *err)
{
    sqlite3_stmt *sel = NULL, *ins = NULL;
    struct chunk_row row;
    size_t acc = 0, unch = 0;
    stw_code rc;

    memset(&row, 0, sizeof row);
    if (v->state != STW_DRAFT)
        return stw_errorf(err, STW_CONFLICT, "version_not_draft",
                          "version '%s' of product '%s' is %s and refuses writes", v->name,
                          v->product, stw_state_name(v->state));
    /* Insert first and look at the stored hash only when the id was already there: new
     * chunks (the bulk-load case) cost one B-tree descent, not two. */
    rc = store_prepare(db, &sel,
                       "SELECT hash FROM chunks WHERE version_id = ?1 AND chunk_id = ?2", err);
    if (rc == STW_OK)
        rc = store_prepare(db, &ins,
                           "INSERT INTO chunks(version_id, chunk_id, hash, text, conf,"
                           " compartments, source_system, record_id, document_id, section,"
                           " subject, created_ms, provenance, metadata, vector)"
                           " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
                           " ON CONFLICT(version_id, chunk_id) DO NOTHING",
                           err);
    if (rc == STW_OK) {
        sqlite3_bind_int64(sel, 1, version_id);
        sqlite3_bind_int64(ins, 1, version_id);
    }
    for (size_t i = 0; rc == STW_OK && i < n; i++) {
        const stw_chunk *c = &chunks[i];
        rc = validate_chunk(&p->contract, c, i, &row, err);
        if (rc != STW_OK)
            break;
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 2, c->id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 3, row.hash, SHA256_LEN, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, c->text, -1, SQLITE_STATIC);
        sqlite3_bind_int(ins, 5, c->confidentiality);
        sqlite3_bind_text(ins, 6, row.compartments, -1, SQLITE_STATIC);
        store_bind_text(ins, 7, c->source_system);
        store_bind_text(ins, 8, c->record_id);
        store_bind_text(ins, 9, c->document_id);
        store_bind_text(ins, 10, c->section);
        store_bind_text(ins, 11, c->subject);
        if (c->created_ms == STW_TIME_NONE)
            sqlite3_bind_null(ins, 12);
        else
            sqlite3_bind_int64(ins, 12, c->created_ms);
        sqlite3_bind_text(ins, 13, row.provenance, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 14, row.metadata, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 15, c->vector, (int)(c->dim * sizeof(float)), SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = store_error(db, err);
        } else if (sqlite3_changes(db) > 0) {
            acc++;
        } else { /* the id is already stored: identical (unchanged) or a conflict */
            sqlite3_reset(sel);
            sqlite3_bind_text(sel, 2, c->id, -1, SQLITE_STATIC);
            if (sqlite3_step(sel) != SQLITE_ROW)
                rc = store_error(db, err);
            else if (sqlite3_column_bytes(sel, 0) == SHA256_LEN &&
                     memcmp(sqlite3_column_blob(sel, 0), row.hash, SHA256_LEN) == 0)
                unch++;
            else
                rc = stw_errorf(err, STW_CONFLICT, "chunk_conflict",
                                "chunks[%zu]: chunk '%s' was already sent with different"
                                " content",
                                i, c->id);
        }
        chunk_row_clear(&row);
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    if (rc == STW_OK) {
        *accepted = acc;
        *unchanged = unch;
    }
    return rc;
}

/* ---- publish ------------------------------------------------------------------------------ */

void catalog_row_normalise(float *row, size_t dim)
{
    double norm = 0;
    for (size_t i = 0; i < dim; i++)
        norm += (double)row[i] * row[i];
    norm = sqrt(norm);
    for (size_t i = 0; i < dim; i++)
        row[i] = (float)(row[i] / norm);
}

int catalog_version_dir(const char *data_dir, const char *product, const char *version,
                        char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/versions/%s/%s", data_dir, product, version);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    int rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int fsync_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    int rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The message names the file, not the server's folders (it goes back to the client). */
static stw_code io_error(stw_error *err, const char *what, const char *path)
{
    int e = errno;
    const char *base = strrchr(path, '/');
    int full = e == ENOSPC || e == EFBIG || e == EDQUOT;
    return stw_errorf(err, STW_UNAVAILABLE, full ? "storage_full" : "storage_unavailable",
                      "cannot %s the version's %s: %s", what, base ? base + 1 : path,
                      strerror(e));
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] == '/') {
            buf[i] = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return -1;
            buf[i] = '/';
        }
    }
    return (mkdir(buf, 0700) != 0 && errno != EEXIST) ? -1 : 0;
}

/* SHA-256 over (chunk_id, NUL, chunk hash) in chunk-id order: the version's content hash. */
static stw_code content_hash(sqlite3 *db, int64_t vid, char out[STW_HASH_STR_MAX], size_t *n_out,
                             stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char digest[SHA256_LEN];
    size_t n = 0;
    int step;
    stw_code rc;

    if (ctx == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    rc = store_prepare(db, &stmt,
                       "SELECT chunk_id, hash FROM chunks WHERE version_id = ?1 ORDER BY chunk_id",
                       err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_int64(stmt, 1, vid);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *cid = store_col_text(stmt, 0);
        EVP_DigestUpdate(ctx, cid, strlen(cid) + 1); /* the id and its NUL */
        EVP_DigestUpdate(ctx, sqlite3_column_blob(stmt, 1), SHA256_LEN);
        n++;
    }
    if (step != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    EVP_DigestFinal_ex(ctx, digest, NULL);
    util_hash_str(digest, out);
    *n_out = n;
done:
    sqlite3_finalize(stmt);
    EVP_MD_CTX_free(ctx);
    return rc;
}

static stw_code contract_problems(sqlite3 *db, const stw_product *p, const char *version,
                                  int64_t vid, size_t *n_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_error problems;
    size_t dim = p->contract.dimension, n;
    stw_code rc;

    memset(&problems, 0, sizeof problems);
    rc = store_prepare(db, &stmt,
                       "SELECT count(*), coalesce(sum(length(vector) != ?2), 0) FROM chunks"
                       " WHERE version_id = ?1",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_int64(stmt, 1, vid);
    sqlite3_bind_int64(stmt, 2, (int64_t)(dim * sizeof(float)));
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        rc = store_error(db, err);
        sqlite3_finalize(stmt);
        return rc;
    }
    n = (size_t)sqlite3_column_int64(stmt, 0);
    if (n == 0)
        snprintf(problems.problems[problems.nproblems++], STW_ERR_PROBLEM_MAX,
                 "version has no chunks");
    if (sqlite3_column_int64(stmt, 1) > 0)
        snprintf(problems.problems[problems.nproblems++], STW_ERR_PROBLEM_MAX,
                 "%lld chunks do not have the contract's dimension %zu",
                 (long long)sqlite3_column_int64(stmt, 1), dim);
    sqlite3_finalize(stmt);
    if (problems.nproblems > 0) {
        size_t np = problems.nproblems;
        char msg[STW_ERR_MSG_MAX] = "";
        for (size_t i = 0; i < np; i++) {
            size_t len = strlen(msg);
            snprintf(msg + len, sizeof msg - len, "%s%s", i ? "; " : "", problems.problems[i]);
        }
        stw_errorf(err, STW_UNPROCESSABLE, "contract_violation",
                   "version '%s' of product '%s' fails its contract: %s", version, p->name, msg);
        if (err != NULL) {
            err->nproblems = np;
            memcpy(err->problems, problems.problems, sizeof problems.problems);
        }
        return STW_UNPROCESSABLE;
    }
    *n_out = n;
    return STW_OK;
}

/* The version's k-means cells (CATALOG_CELLS_FILE), min(cells_max, n / STW_CELL_ROWS) of
 * them, for search.c's cell scan. */
static stw_code write_cells(struct publish_stage *st, const float *all, size_t n, size_t dim,
                            const struct publish_opts *o, stw_error *err)
{
    struct catalog_cells_head head;
    size_t cells = n / STW_CELL_ROWS < o->cells_max ? n / STW_CELL_ROWS : o->cells_max;
    uint32_t *cell = malloc(n * sizeof *cell);
    int64_t t0 = util_now_ms();
    char path[4400];
    int fd;
    stw_code rc;

    if (cell == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    rc = fx_partition(all, n, dim, cells, cell, err);
    if (rc != STW_OK) {
        free(cell);
        return rc;
    }
    memset(&head, 0, sizeof head);
    memcpy(head.magic, CATALOG_CELLS_MAGIC, sizeof head.magic);
    head.rows = n;
    head.cells = cells;
    snprintf(path, sizeof path, "%s/%s", st->tmp_dir, CATALOG_CELLS_FILE);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write_all(fd, &head, sizeof head) != 0 ||
        write_all(fd, cell, n * sizeof *cell) != 0 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        free(cell);
        return io_error(err, "write", path);
    }
    close(fd);
    free(cell);
    st->cells = cells;
    st->cells_seconds = (double)(util_now_ms() - t0) / 1000.0;
    return STW_OK;
}

static stw_code write_manifest(const char *dir, const stw_product *p, const char *version,
                               const struct publish_stage *st, const char *vec_hash,
                               const struct publish_opts *o, stw_error *err)
{
    cJSON *man = cJSON_CreateObject(), *ix;
    char *json = NULL, path[4400], at[32];
    int fd = -1;
    stw_code rc = STW_OK;

    if (man == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    stw_time_format(util_now_ms(), at);
    cJSON_AddNumberToObject(man, "format", 1);
    cJSON_AddStringToObject(man, "product", p->name);
    cJSON_AddStringToObject(man, "version", version);
    cJSON_AddNumberToObject(man, "chunks", (double)st->chunks);
    cJSON_AddStringToObject(man, "embedding_model", p->contract.embedding_model);
    cJSON_AddNumberToObject(man, "dimension", (double)p->contract.dimension);
    cJSON_AddStringToObject(man, "metric", stw_metric_name(p->contract.metric));
    cJSON_AddStringToObject(man, "row_order", "chunk_id bytewise ascending");
    cJSON_AddStringToObject(man, "content_hash", st->content_hash);
    cJSON_AddStringToObject(man, "vectors_file", CATALOG_VECTORS_FILE);
    cJSON_AddStringToObject(man, "vectors_sha256", vec_hash);
    if (st->has_index) {
        ix = cJSON_AddObjectToObject(man, "index");
        cJSON_AddStringToObject(ix, "file", CATALOG_INDEX_FILE);
        cJSON_AddStringToObject(ix, "type", "IndexHNSWFlat");
        cJSON_AddNumberToObject(ix, "m", (double)o->hnsw_m);
        cJSON_AddNumberToObject(ix, "ef_construction", (double)o->hnsw_ef_construction);
        cJSON_AddNumberToObject(ix, "build_seconds", st->build_seconds);
    } else {
        cJSON_AddNullToObject(man, "index");
    }
    if (st->cells > 0) {
        ix = cJSON_AddObjectToObject(man, "cells");
        cJSON_AddStringToObject(ix, "file", CATALOG_CELLS_FILE);
        cJSON_AddStringToObject(ix, "type", "k-means (L2)");
        cJSON_AddNumberToObject(ix, "count", (double)st->cells);
        cJSON_AddNumberToObject(ix, "build_seconds", st->cells_seconds);
    } else {
        cJSON_AddNullToObject(man, "cells");
    }
    cJSON_AddStringToObject(man, "built_at", at);
    json = cJSON_Print(man);
    cJSON_Delete(man);
    if (json == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    snprintf(path, sizeof path, "%s/%s", dir, CATALOG_MANIFEST_FILE);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write_all(fd, json, strlen(json)) != 0 || write_all(fd, "\n", 1) != 0 ||
        fsync(fd) != 0)
        rc = io_error(err, "write", path);
    if (fd >= 0)
        close(fd);
    cJSON_free(json);
    return rc;
}

/* The row's answer fields as one JSON line (columns 3..7 of the stage's SELECT):
 * {"labels":{...},"metadata":{...},"provenance":{...},"text":"..."}. Owned: cJSON_free. */
static char *row_payload(sqlite3_stmt *stmt)
{
    cJSON *o = cJSON_CreateObject(), *labels;
    const char *prov = store_col_text(stmt, 6), *meta = store_col_text(stmt, 7);
    char *out;

    if (o == NULL)
        return NULL;
    labels = cJSON_AddObjectToObject(o, "labels");
    cJSON_AddStringToObject(labels, "confidentiality", stw_conf_name(sqlite3_column_int(stmt, 4)));
    cJSON_AddItemToObject(labels, "compartments", cJSON_Parse(store_col_text(stmt, 5)));
    /* stored provenance and metadata are canonical JSON objects already */
    cJSON_AddItemToObject(o, "metadata", cJSON_CreateRaw(meta ? meta : "{}"));
    cJSON_AddItemToObject(o, "provenance", cJSON_CreateRaw(prov ? prov : "{}"));
    cJSON_AddStringToObject(o, "text", store_col_text(stmt, 3) ? store_col_text(stmt, 3) : "");
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

stw_code catalog_publish_stage(sqlite3 *db, const char *data_dir, const stw_product *p,
                               const char *version, const struct publish_opts *o,
                               struct publish_stage *st, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_version_info v;
    char path[4400], rnd[24], vec_hash[STW_HASH_STR_MAX];
    unsigned char digest[SHA256_LEN];
    EVP_MD_CTX *content = NULL, *vecs = NULL;
    float *all = NULL;
    size_t dim = p->contract.dimension, n = 0, row = 0;
    int fd = -1, step;
    fx_index *ix = NULL;
    FILE *rows_f = NULL;
    uint64_t *row_off = NULL;
    stw_code rc;

    memset(st, 0, sizeof *st);
    rc = catalog_version_get(db, p->name, version, &v, &st->version_id, err);
    if (rc != STW_OK)
        return rc;
    if (v.state != STW_DRAFT)
        return stw_errorf(err, STW_CONFLICT, "version_not_draft",
                          "version '%s' of product '%s' is already %s", version, p->name,
                          stw_state_name(v.state));
    rc = contract_problems(db, p, version, st->version_id, &n, err);
    if (rc != STW_OK)
        return rc;
    if (n > SIZE_MAX / sizeof(float) / dim)
        return stw_errorf(err, STW_TOO_LARGE, "version_too_large", "%zu vectors of dimension %zu",
                          n, dim);
    if (catalog_version_dir(data_dir, p->name, version, st->final_dir, sizeof st->final_dir) !=
            0 ||
        util_random_id("", 8, rnd, sizeof rnd) != 0)
        return stw_errorf(err, STW_INTERNAL, "path_too_long", "data folder path too long");
    snprintf(st->parent, sizeof st->parent, "%s/versions/%s", data_dir, p->name);
    snprintf(st->tmp_dir, sizeof st->tmp_dir, "%s/.tmp-%s-%s", st->parent, version, rnd);
    if (mkdir_p(st->parent) != 0)
        return io_error(err, "create", st->parent);
    snprintf(path, sizeof path, "%s/versions/%s", data_dir, CATALOG_PUBLISH_LOCK);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0)
        return io_error(err, "open", path);
    st->locked = 1;
    while (flock(st->lock_fd, LOCK_SH) != 0) { /* waits out a cleanup in another process */
        if (errno != EINTR) {
            rc = io_error(err, "lock", path);
            catalog_publish_abort(st);
            return rc;
        }
    }
    if (mkdir(st->tmp_dir, 0700) != 0) {
        rc = io_error(err, "create", st->tmp_dir);
        catalog_publish_abort(st);
        return rc;
    }
    st->tmp_made = 1;

    content = EVP_MD_CTX_new();
    vecs = EVP_MD_CTX_new();
    all = malloc(n * dim * sizeof(float));
    if (content == NULL || vecs == NULL || all == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto fail;
    }
    EVP_DigestInit_ex(content, EVP_sha256(), NULL);
    EVP_DigestInit_ex(vecs, EVP_sha256(), NULL);
    rc = store_prepare(db, &stmt,
                       "SELECT chunk_id, hash, vector, text, conf, compartments, provenance,"
                       " metadata FROM chunks WHERE version_id = ?1 ORDER BY chunk_id",
                       err);
    if (rc != STW_OK)
        goto fail;
    snprintf(path, sizeof path, "%s/%s", st->tmp_dir, CATALOG_ROWS_FILE);
    { /* chunk text: readable by the owner only, like every other file of a version */
        int rfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        rows_f = rfd >= 0 ? fdopen(rfd, "wb") : NULL;
        if (rfd >= 0 && rows_f == NULL)
            close(rfd);
    }
    row_off = malloc((n + 1) * sizeof *row_off);
    if (rows_f == NULL || row_off == NULL) {
        rc = io_error(err, "create", path);
        goto fail;
    }
    row_off[0] = 0;
    sqlite3_bind_int64(stmt, 1, st->version_id);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW && row < n) {
        const char *cid = store_col_text(stmt, 0);
        float *buf = all + row * dim;
        char *line = row_payload(stmt);
        size_t len = line ? strlen(line) : 0;
        if (line == NULL || fwrite(line, 1, len, rows_f) != len || fputc('\n', rows_f) == EOF) {
            cJSON_free(line);
            rc = io_error(err, "write", path);
            goto fail;
        }
        cJSON_free(line);
        row_off[row + 1] = row_off[row] + len + 1;
        memcpy(buf, sqlite3_column_blob(stmt, 2), dim * sizeof(float));
        if (p->contract.metric == STW_METRIC_COSINE) /* normalise once, at publish */
            catalog_row_normalise(buf, dim);
        EVP_DigestUpdate(content, cid, strlen(cid) + 1); /* the id and its NUL */
        EVP_DigestUpdate(content, sqlite3_column_blob(stmt, 1), SHA256_LEN);
        row++;
    }
    if (step != SQLITE_DONE || row != n) {
        rc = step != SQLITE_DONE && step != SQLITE_ROW ? store_error(db, err)
                                                       : stw_errorf(err, STW_CONFLICT,
                                                                    "version_changed",
                                                                    "chunks changed during"
                                                                    " publish; retry");
        goto fail;
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    EVP_DigestFinal_ex(content, digest, NULL);
    util_hash_str(digest, st->content_hash);
    st->chunks = n;
    snprintf(path, sizeof path, "%s/%s", st->tmp_dir, CATALOG_ROWS_FILE);
    if (fflush(rows_f) != 0 || fsync(fileno(rows_f)) != 0) {
        rc = io_error(err, "write", path);
        goto fail;
    }
    fclose(rows_f);
    rows_f = NULL;
    snprintf(path, sizeof path, "%s/%s", st->tmp_dir, CATALOG_ROWS_INDEX);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write_all(fd, row_off, (n + 1) * sizeof *row_off) != 0 || fsync(fd) != 0) {
        rc = io_error(err, "write", path);
        goto fail;
    }
    close(fd);
    fd = -1;

    snprintf(path, sizeof path, "%s/%s", st->tmp_dir, CATALOG_VECTORS_FILE);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write_all(fd, all, n * dim * sizeof(float)) != 0 || fsync(fd) != 0) {
        rc = io_error(err, "write", path);
        goto fail;
    }
    close(fd);
    fd = -1;
    EVP_DigestUpdate(vecs, all, n * dim * sizeof(float));
    EVP_DigestFinal_ex(vecs, digest, NULL);
    util_hash_str(digest, vec_hash);

    if (o->hnsw_min_rows > 0 && n >= o->hnsw_min_rows) {
        int64_t t0 = util_now_ms();
        rc = fx_build(all, n, dim, p->contract.metric != STW_METRIC_L2, o->hnsw_m,
                      o->hnsw_ef_construction, &ix, err);
        if (rc != STW_OK)
            goto fail;
        st->build_seconds = (double)(util_now_ms() - t0) / 1000.0;
        snprintf(path, sizeof path, "%s/%s", st->tmp_dir, CATALOG_INDEX_FILE);
        rc = fx_save(ix, path, err);
        if (rc != STW_OK)
            goto fail;
        if (chmod(path, 0600) != 0) { /* FAISS creates it with the process's umask */
            rc = io_error(err, "protect", path);
            goto fail;
        }
        if (fsync_file(path) != 0) {
            rc = io_error(err, "sync", path);
            goto fail;
        }
        st->has_index = 1;
    }
    if (st->has_index && n / STW_CELL_ROWS >= 2 && o->cells_max >= 2) { /* 1 cell: none */
        rc = write_cells(st, all, n, dim, o, err);
        if (rc != STW_OK)
            goto fail;
    }
    rc = write_manifest(st->tmp_dir, p, version, st, vec_hash, o, err);
    if (rc != STW_OK)
        goto fail;
    if (fsync_path(st->tmp_dir) != 0) {
        rc = io_error(err, "sync", st->tmp_dir);
        goto fail;
    }
    EVP_MD_CTX_free(content);
    EVP_MD_CTX_free(vecs);
    free(all);
    free(row_off);
    fx_free(ix);
    return STW_OK;
fail:
    if (fd >= 0)
        close(fd);
    if (rows_f != NULL)
        fclose(rows_f);
    sqlite3_finalize(stmt);
    EVP_MD_CTX_free(content);
    EVP_MD_CTX_free(vecs);
    free(all);
    free(row_off);
    fx_free(ix);
    catalog_publish_abort(st);
    return rc;
}

void catalog_publish_abort(struct publish_stage *st)
{
    if (st->tmp_made)
        rm_rf(st->tmp_dir);
    st->tmp_made = 0;
    if (st->locked)
        close(st->lock_fd); /* releases the flock */
    st->locked = 0;
}

stw_code catalog_publish_commit(sqlite3 *db, const stw_product *p, const char *version,
                                struct publish_stage *st, stw_version_info *out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_version_info v;
    int64_t vid;
    char hash[STW_HASH_STR_MAX];
    size_t n = 0;
    stw_code rc;

    rc = catalog_version_get(db, p->name, version, &v, &vid, err);
    if (rc != STW_OK)
        return rc;
    if (v.state != STW_DRAFT || vid != st->version_id)
        return stw_errorf(err, STW_CONFLICT, "version_not_draft",
                          "version '%s' of product '%s' is already %s", version, p->name,
                          stw_state_name(v.state));
    /* chunks may have been added while the files were being built without the write lock */
    rc = content_hash(db, vid, hash, &n, err);
    if (rc != STW_OK)
        return rc;
    if (n != st->chunks || strcmp(hash, st->content_hash) != 0)
        return stw_errorf(err, STW_CONFLICT, "version_changed",
                          "chunks were added to version '%s' of product '%s' during publish;"
                          " publish again",
                          version, p->name);
    rm_rf(st->final_dir); /* a leftover of a crash between rename and commit */
    if (rename(st->tmp_dir, st->final_dir) != 0)
        return io_error(err, "rename", st->final_dir);
    st->tmp_made = 0;
    if (fsync_path(st->parent) != 0) {
        rc = io_error(err, "sync", st->parent);
        goto fail;
    }
    rc = store_prepare(db, &stmt,
                       "UPDATE versions SET state = 1, chunks = ?2, content_hash = ?3,"
                       " published_ms = ?4 WHERE id = ?1 AND state = 0",
                       err);
    if (rc != STW_OK)
        goto fail;
    sqlite3_bind_int64(stmt, 1, vid);
    sqlite3_bind_int64(stmt, 2, (int64_t)n);
    sqlite3_bind_text(stmt, 3, st->content_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, util_now_ms());
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = store_error(db, err);
        goto fail;
    }
    sqlite3_finalize(stmt);
    return catalog_version_get(db, p->name, version, out, NULL, err);
fail:
    /* the transaction will roll back: the folder must not outlive it */
    sqlite3_finalize(stmt);
    rm_rf(st->final_dir);
    return rc;
}

stw_code catalog_retire(sqlite3 *db, const char *product, const char *version,
                        stw_version_info *out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_version_info v;
    int64_t vid;
    stw_code rc;

    rc = catalog_version_get(db, product, version, &v, &vid, err);
    if (rc != STW_OK)
        return rc;
    if (v.state != STW_PUBLISHED)
        return stw_errorf(err, STW_CONFLICT, "version_not_published",
                          "version '%s' of product '%s' is %s; only published versions can be"
                          " retired",
                          version, product, stw_state_name(v.state));
    rc = store_prepare(db, &stmt, "UPDATE versions SET state = 2, retired_ms = ?2 WHERE id = ?1",
                       err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_int64(stmt, 1, vid);
    sqlite3_bind_int64(stmt, 2, util_now_ms());
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    sqlite3_finalize(stmt);
    if (rc == STW_OK)
        rc = catalog_version_get(db, product, version, out, NULL, err);
    return rc;
}

stw_code catalog_resolve(sqlite3 *db, const stw_product_ref *ref, stw_version_info *out,
                         int64_t *id_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_version_info v;
    int64_t vid = 0;
    int found = 0;
    stw_code rc;

    if (ref->version != NULL) {
        rc = catalog_version_get(db, ref->product, ref->version, &v, &vid, err);
        if (rc != STW_OK)
            return rc;
        if (v.state == STW_DRAFT)
            return stw_errorf(err, STW_NOT_FOUND, "version_not_published",
                              "version '%s' of product '%s' is not published", ref->version,
                              ref->product);
        found = 1;
    } else {
        int as_of = ref->as_of_ms != STW_TIME_NONE;
        rc = store_prepare(db, &stmt,
                           as_of ? "SELECT " VERSION_COLS " FROM versions WHERE product = ?1"
                                   " AND state IN (1, 2) AND published_ms <= ?2"
                                   /* latest at T: not yet retired at T */
                                   " AND (retired_ms IS NULL OR retired_ms > ?2)"
                                   " ORDER BY published_ms DESC, id DESC LIMIT 1"
                                 : "SELECT " VERSION_COLS " FROM versions WHERE product = ?1"
                                   " AND state = 1 ORDER BY published_ms DESC, id DESC LIMIT 1",
                           err);
        if (rc != STW_OK)
            return rc;
        sqlite3_bind_text(stmt, 1, ref->product, -1, SQLITE_STATIC);
        if (as_of)
            sqlite3_bind_int64(stmt, 2, ref->as_of_ms);
        switch (sqlite3_step(stmt)) {
        case SQLITE_ROW:
            version_from_row(stmt, &v, &vid);
            found = 1;
            break;
        case SQLITE_DONE: break;
        default: rc = store_error(db, err); break;
        }
        sqlite3_finalize(stmt);
        stmt = NULL;
        if (rc != STW_OK)
            return rc;
        if (!found && as_of) {
            char at[32];
            stw_time_format(ref->as_of_ms, at);
            return stw_errorf(err, STW_NOT_FOUND, "no_version_at",
                              "product '%s' had no published version at %s", ref->product, at);
        }
        if (!found) {
            /* all retired (410) or never published (404)? */
            int retired = 0;
            rc = store_prepare(db, &stmt,
                               "SELECT 1 FROM versions WHERE product = ?1 AND state = 2 LIMIT 1",
                               err);
            if (rc != STW_OK)
                return rc;
            sqlite3_bind_text(stmt, 1, ref->product, -1, SQLITE_STATIC);
            retired = sqlite3_step(stmt) == SQLITE_ROW;
            sqlite3_finalize(stmt);
            if (retired)
                return stw_errorf(err, STW_GONE, "version_retired",
                                  "every published version of product '%s' is retired",
                                  ref->product);
            return stw_errorf(err, STW_NOT_FOUND, "no_published_version",
                              "product '%s' has no published version", ref->product);
        }
    }
    if (v.state == STW_RETIRED)
        return stw_errorf(err, STW_GONE, "version_retired",
                          "version '%s' of product '%s' is retired", v.name, ref->product);
    *out = v;
    if (id_out)
        *id_out = vid;
    return STW_OK;
}

void catalog_cleanup(sqlite3 *db, const char *data_dir)
{
    char vdir[4096], pdir[4400], path[4700];
    DIR *top = NULL, *sub = NULL;
    struct dirent *pe, *ve;
    sqlite3_stmt *stmt = NULL;
    int lock_fd;

    snprintf(vdir, sizeof vdir, "%s/versions", data_dir);
    snprintf(path, sizeof path, "%s/%s", vdir, CATALOG_PUBLISH_LOCK);
    lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) /* no versions/ folder yet: nothing to clean */
        return;
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) { /* a publish is in flight elsewhere */
        close(lock_fd);
        return;
    }
    top = opendir(vdir);
    if (top == NULL) {
        close(lock_fd);
        return;
    }
    if (store_prepare(db, &stmt,
                      "SELECT 1 FROM versions WHERE product = ?1 AND name = ?2 AND state IN (1,2)",
                      NULL) != STW_OK) {
        closedir(top);
        close(lock_fd);
        return;
    }
    while ((pe = readdir(top)) != NULL) {
        if (pe->d_name[0] == '.')
            continue;
        snprintf(pdir, sizeof pdir, "%s/%s", vdir, pe->d_name);
        sub = opendir(pdir);
        if (sub == NULL)
            continue;
        while ((ve = readdir(sub)) != NULL) {
            int keep;
            if (strcmp(ve->d_name, ".") == 0 || strcmp(ve->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", pdir, ve->d_name);
            /* Temporary ".tmp-*" folders go by the same rule as everything else: kept only if
             * a published or retired version has that name (".tmp-x" is a valid version
             * name, so the prefix alone must not condemn a folder). */
            sqlite3_reset(stmt);
            sqlite3_bind_text(stmt, 1, pe->d_name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(stmt, 2, ve->d_name, -1, SQLITE_TRANSIENT);
            /* only a definite "no such published version" removes; an error keeps */
            keep = sqlite3_step(stmt) != SQLITE_DONE;
            if (!keep)
                rm_rf(path);
        }
        closedir(sub);
    }
    closedir(top);
    sqlite3_finalize(stmt);
    close(lock_fd);
}
