/* audit.c - append-only, hash-chained audit trail, per-query receipts, governance reads.
 *
 * hash(n) = SHA-256(hash(n-1) || canonical_json({"at","detail","principal","seq","type"})),
 * with hash(0) = AUDIT_GENESIS. Receipts (the lineage of one answer) and disclosure rows (one
 * per returned chunk, for the accounting of disclosures per subject) are written in the same
 * transaction as the query event: an answer never leaves without its record. The query
 * event holds the receipt's SHA-256, and verify checks the receipt and its disclosure rows
 * against it. Event times never decrease along the chain, which turns time windows into seq
 * ranges for the events page; usage reads hour and day rollups (usage_rollup) kept in the
 * receipt's transaction. Query vectors are kept only as a SHA-256; chunk text never enters
 * the trail. */
#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "limits.h"
#include "store.h"
#include "util.h"

/* A receipt, its event's detail and the event's canonical form are written once per query,
 * as text in cJSON's format (util_buf_json_*): building them as cJSON trees (a node and two
 * allocations per member, then printing) cost more than the rest of the receipt together. */

/* the text, or NULL when out of memory. Owned: free(). */
static char *buf_done(struct util_buf *b)
{
    if (b->oom || b->p == NULL) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

/* canonical({"at","detail","principal","seq","type"}) into an owned string (free()).
 * detail_canon must already be canonical JSON. The members are written in sorted key order
 * around the detail's text, byte for byte what util_canonical_json gives for the same object
 * (it only sorts keys, and printing a parsed canonical text reproduces it), without parsing
 * the detail again: this runs once per event on append and on verify. */
static char *event_canonical(int64_t seq, int64_t at_ms, const char *type, const char *principal,
                             const char *detail_canon)
{
    struct util_buf w = {NULL, 0, 0, 0};
    char at[32];

    if (type == NULL || detail_canon == NULL)
        return NULL;
    stw_time_format(at_ms, at);
    util_buf_str(&w, "{\"at\":");
    util_buf_json_string(&w, at);
    util_buf_str(&w, ",\"detail\":");
    util_buf_str(&w, detail_canon);
    util_buf_str(&w, ",\"principal\":");
    util_buf_json_string(&w, principal);
    util_buf_str(&w, ",\"seq\":");
    util_buf_json_number(&w, (double)seq);
    util_buf_str(&w, ",\"type\":");
    util_buf_json_string(&w, type);
    util_buf_add(&w, "}", 1);
    return buf_done(&w);
}

/* 0, or -1 when out of memory (out is then not a hash: the event must not be written) */
static int chain_hash(const char *prev_hash, const char *canon, char out[STW_HASH_STR_MAX])
{
    size_t lp = strlen(prev_hash), lc = strlen(canon);
    unsigned char digest[SHA256_LEN];
    char *buf = malloc(lp + lc);

    if (buf == NULL)
        return -1;
    memcpy(buf, prev_hash, lp);
    memcpy(buf + lp, canon, lc);
    util_sha256(buf, lp + lc, digest);
    util_hash_str(digest, out);
    free(buf);
    return 0;
}

static stw_code tail_read(sqlite3 *db, struct stmt_cache *sc, struct chain_tail *t,
                          stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc = store_take(
        sc, db, &stmt, "SELECT seq, hash, at_ms FROM audit_events ORDER BY seq DESC LIMIT 1", err);

    if (rc != STW_OK)
        return rc;
    t->next_seq = 1;
    t->at_ms = INT64_MIN;
    snprintf(t->hash, sizeof t->hash, "%s", AUDIT_GENESIS);
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW:
        t->next_seq = sqlite3_column_int64(stmt, 0) + 1;
        snprintf(t->hash, sizeof t->hash, "%s", store_col_text(stmt, 1));
        t->at_ms = sqlite3_column_int64(stmt, 2);
        break;
    case SQLITE_DONE: break;
    default: rc = store_error(db, err); break;
    }
    store_give(sc, stmt);
    return rc;
}

/* audit_append after the tail t (read by the caller in this transaction, or NULL to read it
 * here; moved on to the new event), also giving the time actually recorded: at_ms, or the
 * previous event's time if the wall clock stepped back, so that at never decreases along the
 * chain (verify checks it; audit_events_json turns time windows into seq ranges because of
 * it). canonical: detail_json is in canonical form already (built with its keys in order). */
static stw_code append_event(sqlite3 *db, struct stmt_cache *sc, struct chain_tail *t,
                             int64_t at_ms, const char *type, const char *principal,
                             const char *detail_json, int canonical, int64_t *seq_out,
                             int64_t *at_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    struct chain_tail own;
    char hash[STW_HASH_STR_MAX];
    char *detail = NULL, *canon = NULL;
    int64_t seq;
    stw_code rc = STW_OK;

    detail = canonical ? util_strdup(detail_json) : util_canonical_json(detail_json);
    if (detail == NULL)
        return stw_errorf(err, STW_INTERNAL, "audit_detail", "audit detail is not JSON");
    if (t == NULL) {
        rc = tail_read(db, sc, &own, err);
        if (rc != STW_OK)
            goto done;
        t = &own;
    }
    seq = t->next_seq;
    if (t->at_ms > at_ms)
        at_ms = t->at_ms;
    canon = event_canonical(seq, at_ms, type, principal, detail);
    if (canon == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    if (chain_hash(t->hash, canon, hash) != 0) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    rc = store_take(sc, db, &stmt,
                    "INSERT INTO audit_events(seq, at_ms, type, principal, detail, prev_hash,"
                    " hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, at_ms);
    sqlite3_bind_text(stmt, 3, type, -1, SQLITE_STATIC);
    store_bind_text(stmt, 4, principal);
    sqlite3_bind_text(stmt, 5, detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, t->hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, hash, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    t->next_seq = seq + 1;
    t->at_ms = at_ms;
    memcpy(t->hash, hash, sizeof t->hash);
    if (seq_out)
        *seq_out = seq;
    if (at_out)
        *at_out = at_ms;
done:
    store_give(sc, stmt);
    free(detail);
    free(canon);
    return rc;
}

stw_code audit_append(sqlite3 *db, int64_t at_ms, const char *type, const char *principal,
                      const char *detail_json, int64_t *seq_out, stw_error *err)
{
    return append_event(db, NULL, NULL, at_ms, type, principal, detail_json, 0, seq_out, NULL,
                        err);
}

#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL
#define ROLL_MAX 256 /* rollup rows a batch sums before it writes them */

/* Write the batch's summed rollups into usage_rollup (migration 2) and empty them. */
static stw_code rollup_flush(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                             stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc = STW_OK;

    if (b->nroll == 0)
        return STW_OK;
    rc = store_take(sc, db, &stmt,
                    "INSERT INTO usage_rollup(res, bucket, dim, key, queries, chunks)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(res, bucket, dim, key)"
                    " DO UPDATE SET queries = queries + excluded.queries,"
                    " chunks = chunks + excluded.chunks",
                    err);
    for (size_t i = 0; rc == STW_OK && i < b->nroll; i++) {
        const struct audit_rollup *u = &b->roll[i];
        sqlite3_reset(stmt);
        sqlite3_bind_int64(stmt, 1, u->res);
        sqlite3_bind_int64(stmt, 2, u->bucket);
        sqlite3_bind_text(stmt, 3, u->dim, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, u->key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 5, u->queries);
        sqlite3_bind_int64(stmt, 6, u->chunks);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = store_error(db, err);
    }
    store_give(sc, stmt);
    for (size_t i = 0; i < b->nroll; i++)
        free(b->roll[i].key);
    b->nroll = 0;
    return rc;
}

/* +queries, +chunks on one rollup row of the batch. dim is a string literal. */
static stw_code rollup_add1(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                            int64_t res, int64_t bucket, const char *dim, const char *key,
                            int64_t chunks, stw_error *err)
{
    struct audit_rollup *u;

    for (size_t i = 0; i < b->nroll; i++) {
        u = &b->roll[i];
        if (u->bucket == bucket && u->res == res && u->dim == dim && strcmp(u->key, key) == 0) {
            u->queries++;
            u->chunks += chunks;
            return STW_OK;
        }
    }
    if (b->nroll == ROLL_MAX) {
        stw_code rc = rollup_flush(db, sc, b, err);
        if (rc != STW_OK)
            return rc;
    }
    if (b->roll == NULL && (b->roll = calloc(ROLL_MAX, sizeof *b->roll)) == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    u = &b->roll[b->nroll];
    u->key = util_strdup(key);
    if (u->key == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    u->res = res;
    u->bucket = bucket;
    u->dim = dim;
    u->queries = 1;
    u->chunks = chunks;
    b->nroll++;
    return STW_OK;
}

/* Count one query into the rollups: per hour and per day, +1 query and +nhits chunks for its
 * principal and its purpose, and +1 query and +hits for each product it returned chunks from
 * (the same counts audit_usage_json reads from raw rows). */
static stw_code rollup_add(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                           const struct audit_receipt *r, int64_t at_ms, stw_error *err)
{
    static const int64_t res[] = {HOUR_MS, DAY_MS};
    stw_code rc = STW_OK;

    for (size_t k = 0; rc == STW_OK && k < 2; k++) {
        int64_t bucket = at_ms / res[k];
        rc = rollup_add1(db, sc, b, res[k], bucket, "principal", r->principal,
                         (int64_t)r->nhits, err);
        if (rc == STW_OK)
            rc = rollup_add1(db, sc, b, res[k], bucket, "purpose", r->purpose,
                             (int64_t)r->nhits, err);
        for (size_t i = 0; rc == STW_OK && i < r->nhits; i++) {
            const char *key = r->hits[i].product;
            int64_t chunks = 0;
            size_t j;
            for (j = 0; j < i && strcmp(r->hits[j].product, key) != 0; j++) {
            }
            if (j < i)
                continue; /* product counted at its first hit */
            for (j = i; j < r->nhits; j++)
                chunks += strcmp(r->hits[j].product, key) == 0;
            rc = rollup_add1(db, sc, b, res[k], bucket, "product", key, chunks, err);
        }
    }
    return rc;
}

/* Migration 4: once the receipts after the last subject run span STW_SUBJECT_RUN_EVENTS
 * events of the chain, write them as the next run: their disclosures' (subject, at_ms,
 * query_id, rank), sorted, so the run is appended page by page rather than scattered over a
 * subject index. seq and at_ms are the receipt just written, the chain's last event. */
static stw_code subject_run_maybe(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                                  int64_t seq, int64_t at_ms, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int64_t rows;
    stw_code rc;

    if (seq - b->run_upto < STW_SUBJECT_RUN_EVENTS)
        return STW_OK;
    /* the span by seq (receipts_seq): by time it could be every receipt (migration 6) */
    rc = store_take(sc, db, &stmt,
                    "INSERT INTO subject_index(run, subject, at_ms, query_id, rank)"
                    " SELECT ?1, d.subject, d.at_ms, d.query_id, d.rank"
                    " FROM receipts r INDEXED BY receipts_seq"
                    " JOIN disclosures d ON d.query_id = r.query_id"
                    " WHERE r.seq > ?3 AND r.seq <= ?4 AND r.at_ms >= ?2"
                    " AND d.subject IS NOT NULL ORDER BY 2, 3, 4, 5",
                    err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_int64(stmt, 1, b->run + 1);
    sqlite3_bind_int64(stmt, 2, b->run_upto_at);
    sqlite3_bind_int64(stmt, 3, b->run_upto);
    sqlite3_bind_int64(stmt, 4, seq);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    store_give(sc, stmt);
    stmt = NULL;
    if (rc != STW_OK)
        return rc;
    rows = sqlite3_changes64(db);
    rc = store_take(sc, db, &stmt,
                    "INSERT INTO subject_runs(run, from_seq, upto_seq, from_at, upto_at, rows)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_int64(stmt, 1, b->run + 1);
    sqlite3_bind_int64(stmt, 2, b->run_upto + 1);
    sqlite3_bind_int64(stmt, 3, seq);
    sqlite3_bind_int64(stmt, 4, b->run_upto_at == INT64_MIN ? 0 : b->run_upto_at);
    sqlite3_bind_int64(stmt, 5, at_ms);
    sqlite3_bind_int64(stmt, 6, rows);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = store_error(db, err);
    store_give(sc, stmt);
    if (rc == STW_OK) {
        b->run++;
        b->run_upto = seq;
        b->run_upto_at = at_ms;
    }
    return rc;
}

stw_code audit_batch_begin(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                           stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    memset(b, 0, sizeof *b);
    b->run_upto_at = INT64_MIN;
    rc = tail_read(db, sc, &b->tail, err);
    if (rc != STW_OK)
        return rc;
    rc = store_take(sc, db, &stmt,
                    "SELECT run, upto_seq, upto_at FROM subject_runs ORDER BY run DESC LIMIT 1",
                    err);
    if (rc != STW_OK)
        return rc;
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW:
        b->run = sqlite3_column_int64(stmt, 0);
        b->run_upto = sqlite3_column_int64(stmt, 1);
        b->run_upto_at = sqlite3_column_int64(stmt, 2);
        break;
    case SQLITE_DONE: break;
    default: rc = store_error(db, err); break;
    }
    store_give(sc, stmt);
    return rc;
}

stw_code audit_batch_event(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                           int64_t at_ms, const char *type, const char *principal,
                           const char *detail_json, stw_error *err)
{
    return append_event(db, sc, &b->tail, at_ms, type, principal, detail_json, 0, NULL, NULL,
                        err);
}

stw_code audit_batch_end(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                         stw_error *err)
{
    return rollup_flush(db, sc, b, err);
}

void audit_batch_release(struct audit_batch *b)
{
    for (size_t i = 0; i < b->nroll; i++)
        free(b->roll[i].key);
    free(b->roll);
    b->roll = NULL;
    b->nroll = 0;
}

stw_code audit_record_query(sqlite3 *db, struct stmt_cache *sc, const struct audit_receipt *r,
                            stw_error *err)
{
    struct audit_batch b;
    stw_code rc = audit_batch_begin(db, sc, &b, err);

    if (rc == STW_OK)
        rc = audit_batch_query(db, sc, &b, r, err);
    if (rc == STW_OK)
        rc = audit_batch_end(db, sc, &b, err);
    audit_batch_release(&b);
    return rc;
}

stw_code audit_batch_query(sqlite3 *db, struct stmt_cache *sc, struct audit_batch *b,
                           const struct audit_receipt *r, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    struct util_buf rw = {NULL, 0, 0, 0}, dw = {NULL, 0, 0, 0};
    char *rec_json = NULL, *detail_json = NULL, *filter = NULL, at[32];
    char receipt_hash[STW_HASH_STR_MAX];
    unsigned char digest[SHA256_LEN];
    int64_t seq = 0, at_ms;
    stw_code rc = STW_OK;

    /* From here on at_ms is the event's time (never before the previous event's), so that
     * the receipt, its disclosures and the rollups say the same time as the chain. */
    at_ms = b->tail.at_ms > r->at_ms ? b->tail.at_ms : r->at_ms;
    stw_time_format(at_ms, at);
    /* the filter as cJSON prints it (the caller's text may be spaced differently); text
     * that is not JSON (a library caller's mistake: the HTTP layer sends printed JSON) is
     * kept as a JSON string rather than lost, or failing the receipt after its answer left */
    if (r->filter_json != NULL) {
        cJSON *f = cJSON_Parse(r->filter_json);
        if (f == NULL)
            f = cJSON_CreateString(r->filter_json);
        filter = f ? cJSON_PrintUnformatted(f) : NULL;
        cJSON_Delete(f);
        if (filter == NULL) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto done;
        }
    }
    /* versions_json is cJSON's unformatted print of [{"product","version"},...]
     * (stw_query_run, or a journal record of it): written as it is */
    util_buf_str(&rw, "{\"query_id\":");
    util_buf_json_string(&rw, r->query_id);
    util_buf_str(&rw, ",\"at\":");
    util_buf_json_string(&rw, at);
    util_buf_str(&rw, ",\"principal\":");
    util_buf_json_string(&rw, r->principal);
    util_buf_str(&rw, ",\"purpose\":");
    util_buf_json_string(&rw, r->purpose);
    if (r->reason) {
        util_buf_str(&rw, ",\"reason\":");
        util_buf_json_string(&rw, r->reason);
    }
    util_buf_str(&rw, r->break_glass ? ",\"break_glass\":true" : ",\"break_glass\":false");
    util_buf_str(&rw, r->text_withheld ? ",\"text_withheld\":true" : ",\"text_withheld\":false");
    util_buf_str(&rw, ",\"policy_version\":");
    util_buf_json_number(&rw, (double)r->policy_version);
    util_buf_str(&rw, ",\"versions\":");
    util_buf_str(&rw, r->versions_json);
    util_buf_str(&rw, ",\"filter\":");
    util_buf_str(&rw, filter ? filter : "null");
    util_buf_str(&rw, ",\"k\":");
    util_buf_json_number(&rw, (double)r->k);
    util_buf_str(&rw, ",\"vector_sha256\":");
    util_buf_json_string(&rw, r->vector_sha256);
    util_buf_str(&rw, ",\"results\":[");
    for (size_t i = 0; i < r->nhits; i++) {
        const struct audit_hit *h = &r->hits[i];
        util_buf_str(&rw, i ? ",{\"rank\":" : "{\"rank\":");
        util_buf_json_number(&rw, (double)h->rank);
        util_buf_str(&rw, ",\"score\":");
        util_buf_json_number(&rw, h->score);
        util_buf_str(&rw, ",\"product\":");
        util_buf_json_string(&rw, h->product);
        util_buf_str(&rw, ",\"version\":");
        util_buf_json_string(&rw, h->version);
        util_buf_str(&rw, ",\"chunk_id\":");
        util_buf_json_string(&rw, h->chunk_id);
        util_buf_str(&rw, ",\"source_system\":");
        util_buf_json_string(&rw, h->source_system);
        util_buf_str(&rw, ",\"document_id\":");
        util_buf_json_string(&rw, h->document_id);
        util_buf_str(&rw, ",\"subject\":");
        util_buf_json_string(&rw, h->subject);
        util_buf_add(&rw, "}", 1);
    }
    util_buf_str(&rw, "]}");
    rec_json = buf_done(&rw);
    if (rec_json == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    /* the receipt's exact text is hashed into the event, so the chain covers the lineage
     * (which chunks reached whom); verify checks the receipt and its disclosure rows */
    util_sha256(rec_json, strlen(rec_json), digest);
    util_hash_str(digest, receipt_hash);
    /* The event carries the lineage too (ids and hashes only), so the chain covers it. Its
     * keys go in sorted order (the versions' members are "product" < "version"), so that
     * the detail is already canonical: verify checks that it is. */
    util_buf_add(&dw, "{", 1);
    if (r->break_glass)
        util_buf_str(&dw, "\"break_glass\":true,");
    util_buf_str(&dw, "\"k\":");
    util_buf_json_number(&dw, (double)r->k);
    util_buf_str(&dw, ",\"policy_version\":");
    util_buf_json_number(&dw, (double)r->policy_version);
    util_buf_str(&dw, ",\"purpose\":");
    util_buf_json_string(&dw, r->purpose);
    util_buf_str(&dw, ",\"query_id\":");
    util_buf_json_string(&dw, r->query_id);
    util_buf_str(&dw, ",\"receipt_sha256\":");
    util_buf_json_string(&dw, receipt_hash);
    util_buf_str(&dw, ",\"results\":");
    util_buf_json_number(&dw, (double)r->nhits);
    util_buf_str(&dw, ",\"vector_sha256\":");
    util_buf_json_string(&dw, r->vector_sha256);
    util_buf_str(&dw, ",\"versions\":");
    util_buf_str(&dw, r->versions_json);
    util_buf_add(&dw, "}", 1);
    detail_json = buf_done(&dw);
    if (detail_json == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    rc = append_event(db, sc, &b->tail, at_ms, "query", r->principal, detail_json, 1, &seq,
                      &at_ms, err);
    if (rc != STW_OK)
        goto done;
    if (r->break_glass) { /* listed on its own: GET /v1/audit/events?type=break_glass */
        cJSON *bg = cJSON_CreateObject();
        char *bg_json;
        cJSON_AddStringToObject(bg, "query_id", r->query_id);
        cJSON_AddStringToObject(bg, "purpose", r->purpose);
        cJSON_AddStringToObject(bg, "reason", r->reason ? r->reason : "");
        cJSON_AddNumberToObject(bg, "results", (double)r->nhits);
        bg_json = cJSON_PrintUnformatted(bg);
        cJSON_Delete(bg);
        if (bg_json == NULL) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto done;
        }
        rc = append_event(db, sc, &b->tail, at_ms, "break_glass", r->principal, bg_json, 0,
                          NULL, NULL, err);
        cJSON_free(bg_json);
        if (rc != STW_OK)
            goto done;
    }
    rc = store_take(sc, db, &stmt,
                    "INSERT INTO receipts(query_id, seq, at_ms, principal, purpose,"
                    " policy_version, results, receipt) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                    err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_text(stmt, 1, r->query_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, seq);
    sqlite3_bind_int64(stmt, 3, at_ms);
    sqlite3_bind_text(stmt, 4, r->principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, r->purpose, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, r->policy_version);
    sqlite3_bind_int64(stmt, 7, (int64_t)r->nhits);
    sqlite3_bind_text(stmt, 8, rec_json, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    store_give(sc, stmt);
    stmt = NULL;
    rc = store_take(sc, db, &stmt,
                    "INSERT INTO disclosures(query_id, rank, at_ms, principal, purpose,"
                    " product, version, chunk_id, source_system, document_id, subject)"
                    " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                    err);
    if (rc != STW_OK)
        goto done;
    for (size_t i = 0; i < r->nhits; i++) {
        const struct audit_hit *h = &r->hits[i];
        sqlite3_reset(stmt);
        sqlite3_bind_text(stmt, 1, r->query_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, (int64_t)h->rank);
        sqlite3_bind_int64(stmt, 3, at_ms);
        sqlite3_bind_text(stmt, 4, r->principal, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 5, r->purpose, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 6, h->product, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 7, h->version, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 8, h->chunk_id, -1, SQLITE_STATIC);
        store_bind_text(stmt, 9, h->source_system);
        store_bind_text(stmt, 10, h->document_id);
        store_bind_text(stmt, 11, h->subject);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            rc = store_error(db, err);
            goto done;
        }
    }
    store_give(sc, stmt);
    stmt = NULL;
    rc = rollup_add(db, sc, b, r, at_ms, err);
    if (rc == STW_OK)
        rc = subject_run_maybe(db, sc, b, seq, at_ms, err);
done:
    store_give(sc, stmt);
    cJSON_free(filter);
    free(rec_json);
    free(detail_json);
    return rc;
}

stw_code audit_query_json(sqlite3 *db, const char *query_id, char **out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc;

    rc = store_prepare(db, &stmt, "SELECT receipt FROM receipts WHERE query_id = ?1", err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, query_id, -1, SQLITE_STATIC);
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW:
        *out = util_strdup(store_col_text(stmt, 0));
        if (*out == NULL)
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        break;
    case SQLITE_DONE:
        rc = stw_errorf(err, STW_NOT_FOUND, "unknown_query", "no query '%s'", query_id);
        break;
    default: rc = store_error(db, err); break;
    }
    sqlite3_finalize(stmt);
    return rc;
}

static cJSON *event_json(sqlite3_stmt *stmt)
{
    cJSON *o = cJSON_CreateObject();
    char at[32];

    stw_time_format(sqlite3_column_int64(stmt, 1), at);
    cJSON_AddNumberToObject(o, "seq", (double)sqlite3_column_int64(stmt, 0));
    cJSON_AddStringToObject(o, "at", at);
    cJSON_AddStringToObject(o, "type", store_col_text(stmt, 2));
    if (store_col_text(stmt, 3))
        cJSON_AddStringToObject(o, "principal", store_col_text(stmt, 3));
    else
        cJSON_AddNullToObject(o, "principal");
    cJSON_AddItemToObject(o, "detail", cJSON_Parse(store_col_text(stmt, 4)));
    cJSON_AddStringToObject(o, "prev_hash", store_col_text(stmt, 5));
    cJSON_AddStringToObject(o, "hash", store_col_text(stmt, 6));
    return o;
}

static stw_code print_owned(cJSON *root, char **out, stw_error *err)
{
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (s == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    *out = s;
    return STW_OK;
}

/* The seq of the first event at or after t, or the last seq + 1 if there is none. Exact
 * because at never decreases along the chain (append_event), so a time window is a seq range
 * and every events query below walks an index in seq order. */
static stw_code seq_from_time(sqlite3 *db, int64_t t, int64_t *out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int64_t lo = 1, hi = 1;
    stw_code rc;

    /* a binary search over seq (migration 5 dropped the at_ms index, one page less in every
     * receipt): the first row at or after mid stands for mid, so a gap left by a cut chain
     * cannot mislead it */
    rc = store_prepare(db, &stmt, "SELECT coalesce(max(seq), 0) + 1 FROM audit_events", err);
    if (rc != STW_OK)
        return rc;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        hi = sqlite3_column_int64(stmt, 0);
    else
        rc = store_error(db, err);
    sqlite3_finalize(stmt);
    stmt = NULL;
    if (rc == STW_OK)
        rc = store_prepare(db, &stmt,
                           "SELECT at_ms FROM audit_events WHERE seq >= ?1 ORDER BY seq LIMIT 1",
                           err);
    while (rc == STW_OK && lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int step;
        sqlite3_reset(stmt);
        sqlite3_bind_int64(stmt, 1, mid);
        step = sqlite3_step(stmt);
        if (step == SQLITE_ROW && sqlite3_column_int64(stmt, 0) < t)
            lo = mid + 1;
        else if (step == SQLITE_ROW || step == SQLITE_DONE)
            hi = mid;
        else
            rc = store_error(db, err);
    }
    sqlite3_finalize(stmt);
    *out = lo;
    return rc;
}

stw_code audit_events_json(sqlite3 *db, const stw_event_filter *f, char **out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cJSON *root = NULL, *events;
    size_t n = 0, limit = f->limit;
    int64_t last = 0, lo = 1, hi = INT64_MAX;
    char sql[512];
    int step;
    stw_code rc = STW_OK;

    if (f->since_ms != STW_TIME_NONE)
        rc = seq_from_time(db, f->since_ms, &lo, err);
    if (rc == STW_OK && f->until_ms != STW_TIME_NONE)
        rc = seq_from_time(db, f->until_ms, &hi, err);
    if (rc != STW_OK)
        return rc;
    /* One lower bound on seq: given two (the cursor and the window's start), SQLite seeks to
     * one of them and filters the other row by row, which walked the chain from its start
     * (180 ms for a day's page in a million events). */
    if (f->after_seq == INT64_MAX)
        lo = hi = INT64_MAX; /* nothing comes after the last possible seq: an empty page */
    else if (f->after_seq >= lo)
        lo = f->after_seq + 1;
    /* Only the filters given, so that SQLite can walk (principal, seq) or (type, seq); the
     * time bounds are repeated on +at_ms (no index) as a guard, not as the access path. */
    snprintf(sql, sizeof sql,
             "SELECT seq, at_ms, type, principal, detail, prev_hash, hash FROM audit_events"
             " WHERE seq >= ?2 AND seq < ?3 AND +at_ms >= ?4 AND +at_ms < ?5%s%s%s"
             " ORDER BY seq LIMIT ?8",
             f->principal ? " AND principal = ?6" : "", f->type ? " AND type = ?7" : "",
             /* the type index leaves out queries (migration 5); saying so lets SQLite use it */
             f->type && strcmp(f->type, "query") != 0 ? " AND type <> 'query'" : "");
    root = cJSON_CreateObject();
    if (root == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    events = cJSON_AddArrayToObject(root, "events");
    rc = store_prepare(db, &stmt, sql, err);
    if (rc != STW_OK)
        goto fail;
    sqlite3_bind_int64(stmt, 2, lo);
    sqlite3_bind_int64(stmt, 3, hi);
    sqlite3_bind_int64(stmt, 4, f->since_ms == STW_TIME_NONE ? INT64_MIN : f->since_ms);
    sqlite3_bind_int64(stmt, 5, f->until_ms == STW_TIME_NONE ? INT64_MAX : f->until_ms);
    if (f->principal)
        sqlite3_bind_text(stmt, 6, f->principal, -1, SQLITE_STATIC);
    if (f->type)
        sqlite3_bind_text(stmt, 7, f->type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 8, (int64_t)limit + 1);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == limit)
            break; /* one more row exists: there is a next page */
        last = sqlite3_column_int64(stmt, 0);
        cJSON_AddItemToArray(events, event_json(stmt));
        n++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_error(db, err);
        goto fail;
    }
    if (step == SQLITE_ROW) {
        char cursor[32];
        snprintf(cursor, sizeof cursor, "%lld", (long long)last);
        cJSON_AddStringToObject(root, "next", cursor);
    } else {
        cJSON_AddNullToObject(root, "next");
    }
    sqlite3_finalize(stmt);
    return print_owned(root, out, err);
fail:
    sqlite3_finalize(stmt);
    cJSON_Delete(root);
    return rc;
}

/* Why row `stmt` (seq, at_ms, type, principal, detail, prev_hash, hash) breaks the chain after
 * `prev`, or NULL if it holds; its recomputed hash goes to hash_out. Besides the hashes, each
 * column must have the type and form audit_append writes: a REAL at_ms that truncates to the
 * same integer, or a re-indented detail, hashes the same but is still an edited row. */
static const char *event_check(sqlite3_stmt *stmt, const char *prev,
                               char hash_out[STW_HASH_STR_MAX])
{
    int64_t seq = sqlite3_column_int64(stmt, 0);
    const char *detail = store_col_text(stmt, 4), *why = NULL;
    char *dcanon = NULL, *canon = NULL;

    if (sqlite3_column_type(stmt, 1) != SQLITE_INTEGER)
        return "at_ms is not an integer";
    if (sqlite3_column_type(stmt, 2) != SQLITE_TEXT ||
        sqlite3_column_type(stmt, 4) != SQLITE_TEXT ||
        sqlite3_column_type(stmt, 5) != SQLITE_TEXT ||
        sqlite3_column_type(stmt, 6) != SQLITE_TEXT ||
        (sqlite3_column_type(stmt, 3) != SQLITE_TEXT &&
         sqlite3_column_type(stmt, 3) != SQLITE_NULL))
        return "a column does not hold text";
    dcanon = util_canonical_json(detail);
    if (dcanon == NULL)
        return "detail is not JSON";
    if (strcmp(dcanon, detail) != 0) {
        why = "detail is not in canonical form";
        goto done;
    }
    canon = event_canonical(seq, sqlite3_column_int64(stmt, 1), store_col_text(stmt, 2),
                            store_col_text(stmt, 3), dcanon);
    if (canon == NULL) {
        why = "the event cannot be put in canonical form";
        goto done;
    }
    if (chain_hash(prev, canon, hash_out) != 0)
        why = "out of memory while hashing the event";
    else if (strcmp(prev, store_col_text(stmt, 5)) != 0)
        why = "prev_hash does not match the previous event";
    else if (strcmp(hash_out, store_col_text(stmt, 6)) != 0)
        why = "hash does not match the event's content";
done:
    free(dcanon);
    free(canon);
    return why;
}

static int same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* For a query event (current row of `ev`): its receipt row must hash to the event's
 * receipt_sha256 and agree with the event (seq, time, caller, purpose, policy version, result
 * count: what usage reads), and its disclosure rows must be exactly the receipt's results.
 * rstmt and dstmt are the two lookups below, reused across events. Events written before
 * receipts were hashed carry no receipt_sha256 and are checked as chain links only. */
static const char *receipt_check(sqlite3_stmt *ev, sqlite3_stmt *rstmt, sqlite3_stmt *dstmt)
{
    cJSON *detail = cJSON_Parse(store_col_text(ev, 4)), *receipt = NULL;
    const cJSON *results, *res;
    const char *want =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "receipt_sha256"));
    const char *qid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "query_id"));
    const char *purpose = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "purpose"));
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(detail, "policy_version");
    const char *text, *why = NULL, *principal = store_col_text(ev, 3);
    int64_t at_ms = sqlite3_column_int64(ev, 1);
    unsigned char digest[SHA256_LEN];
    char got[STW_HASH_STR_MAX];
    int step;

    if (want == NULL)
        goto done;
    if (qid == NULL || purpose == NULL || !cJSON_IsNumber(pv)) {
        why = "the query event does not name its query";
        goto done;
    }
    sqlite3_reset(rstmt);
    sqlite3_bind_text(rstmt, 1, qid, -1, SQLITE_STATIC);
    if (sqlite3_step(rstmt) != SQLITE_ROW) {
        why = "the query's receipt is missing";
        goto done;
    }
    text = store_col_text(rstmt, 0);
    util_sha256(text ? text : "", text ? strlen(text) : 0, digest);
    util_hash_str(digest, got);
    if (strcmp(got, want) != 0) {
        why = "the receipt does not match its event";
        goto done;
    }
    receipt = cJSON_Parse(text);
    results = cJSON_GetObjectItemCaseSensitive(receipt, "results");
    if (sqlite3_column_int64(rstmt, 1) != sqlite3_column_int64(ev, 0) ||
        sqlite3_column_type(rstmt, 2) != SQLITE_INTEGER ||
        sqlite3_column_int64(rstmt, 2) != at_ms ||
        !same_text(store_col_text(rstmt, 3), principal) ||
        !same_text(store_col_text(rstmt, 4), purpose) ||
        sqlite3_column_int64(rstmt, 5) != (int64_t)pv->valuedouble ||
        sqlite3_column_int64(rstmt, 6) != (int64_t)cJSON_GetArraySize(results)) {
        why = "the receipt's columns do not match its event";
        goto done;
    }
    sqlite3_reset(dstmt);
    sqlite3_bind_text(dstmt, 1, qid, -1, SQLITE_STATIC);
    res = results ? results->child : NULL;
    while ((step = sqlite3_step(dstmt)) == SQLITE_ROW) {
        static const char *const keys[] = {"product", "version", "chunk_id", "source_system",
                                           "document_id", "subject"};
        int ok = res != NULL &&
                 sqlite3_column_int64(dstmt, 0) ==
                     (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(res, "rank")) &&
                 sqlite3_column_type(dstmt, 1) == SQLITE_INTEGER &&
                 sqlite3_column_int64(dstmt, 1) == at_ms &&
                 same_text(store_col_text(dstmt, 2), principal) &&
                 same_text(store_col_text(dstmt, 3), purpose);
        for (int k = 0; ok && k < 6; k++)
            ok = same_text(store_col_text(dstmt, 4 + k),
                           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(res, keys[k])));
        if (!ok)
            break;
        res = res->next;
    }
    if (step != SQLITE_DONE || res != NULL)
        why = "the disclosure rows do not match the receipt";
done:
    sqlite3_reset(rstmt);
    sqlite3_reset(dstmt);
    cJSON_Delete(receipt);
    cJSON_Delete(detail);
    return why;
}

/* The subject runs (migration 4) against what they index, once the chain itself verified:
 * the runs tile the receipts' seqs without gaps or overlaps, and each holds exactly the rows
 * its span's disclosures give (count of those, count of its own rows, count of its rows that
 * match a disclosure's subject and time). The accounting of disclosures reads the runs, so an
 * edited run would hide disclosures without touching the chain. *bad gets the run's first seq
 * and *why a reason when one does not match. */
static stw_code runs_check(sqlite3 *db, int64_t *bad, const char **why, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int64_t next = -1;
    int step;
    stw_code rc = store_prepare(
        db, &stmt,
        "SELECT r.run, r.from_seq, r.upto_seq, r.rows,"
        " (SELECT count(*) FROM subject_index s WHERE s.run = r.run),"
        " (SELECT count(*) FROM subject_index s JOIN disclosures d ON d.query_id = s.query_id"
        "   AND d.rank = s.rank WHERE s.run = r.run AND d.subject = s.subject"
        "   AND d.at_ms = s.at_ms),"
        " (SELECT count(*) FROM receipts t INDEXED BY receipts_seq"
        "   JOIN disclosures d ON d.query_id = t.query_id"
        "   WHERE t.seq >= r.from_seq AND t.seq <= r.upto_seq AND t.at_ms >= r.from_at"
        "   AND t.at_ms <= r.upto_at AND d.subject IS NOT NULL)"
        " FROM subject_runs r ORDER BY r.run",
        err);
    if (rc != STW_OK)
        return rc;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        int64_t from = sqlite3_column_int64(stmt, 1), rows = sqlite3_column_int64(stmt, 3);
        if (next >= 0 && from != next) {
            *why = "the subject runs leave a gap or overlap: the accounting of disclosures would"
                   " miss or repeat receipts";
            from = next; /* the first seq the runs get wrong */
        } else if (sqlite3_column_int64(stmt, 4) != rows || sqlite3_column_int64(stmt, 5) != rows ||
                 sqlite3_column_int64(stmt, 6) != rows)
            *why = "a subject run does not match the disclosures it indexes: the accounting of"
                   " disclosures would be wrong";
        if (*why != NULL) {
            *bad = from;
            break;
        }
        next = sqlite3_column_int64(stmt, 2) + 1;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = store_error(db, err);
    sqlite3_finalize(stmt);
    return rc;
}

stw_code audit_verify_json(sqlite3 *db, const stw_audit_pin *pin, char **out, int *ok_out,
                           stw_error *err)
{
    sqlite3_stmt *rstmt = NULL, *dstmt = NULL;
    sqlite3_stmt *stmt = NULL;
    char prev[STW_HASH_STR_MAX] = AUDIT_GENESIS, hash[STW_HASH_STR_MAX];
    int64_t count = 0, bad = 0, expect_seq = 1, prev_at = INT64_MIN;
    const char *why = NULL;
    cJSON *root;
    int step;
    stw_code rc;

    rc = store_prepare(db, &rstmt,
                       "SELECT receipt, seq, at_ms, principal, purpose, policy_version, results"
                       " FROM receipts WHERE query_id = ?1",
                       err);
    if (rc == STW_OK)
        rc = store_prepare(db, &dstmt,
                           "SELECT rank, at_ms, principal, purpose, product, version, chunk_id,"
                           " source_system, document_id, subject FROM disclosures"
                           " WHERE query_id = ?1 ORDER BY rank",
                           err);
    if (rc == STW_OK)
        rc = store_prepare(db, &stmt,
                           "SELECT seq, at_ms, type, principal, detail, prev_hash, hash"
                           " FROM audit_events ORDER BY seq",
                           err);
    if (rc != STW_OK)
        goto fail;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(stmt, 0);

        count++;
        if (seq != expect_seq) {
            /* a deleted or renumbered row: name the first seq that is missing */
            why = "sequence gap: an event is missing";
            bad = expect_seq;
            break;
        }
        why = event_check(stmt, prev, hash);
        if (why == NULL && sqlite3_column_int64(stmt, 1) < prev_at)
            why = "at is earlier than the previous event's: times never go back along the chain";
        if (why == NULL && strcmp(store_col_text(stmt, 2), "query") == 0)
            why = receipt_check(stmt, rstmt, dstmt);
        if (why == NULL && pin != NULL && seq == pin->events && strcmp(hash, pin->head) != 0)
            why = "the event does not match the pinned head: the chain was rewritten";
        if (why != NULL) {
            bad = seq;
            break;
        }
        snprintf(prev, sizeof prev, "%s", hash);
        prev_at = sqlite3_column_int64(stmt, 1);
        expect_seq = seq + 1;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_error(db, err);
        goto fail;
    }
    sqlite3_finalize(stmt);
    sqlite3_finalize(rstmt);
    sqlite3_finalize(dstmt);
    if (bad == 0 && pin != NULL && count < pin->events) {
        why = "the chain is shorter than the pinned head: its tail was cut off";
        bad = count + 1;
    }
    if (bad == 0) {
        rc = runs_check(db, &bad, &why, err);
        if (rc != STW_OK)
            return rc;
    }
    root = cJSON_CreateObject();
    if (root == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    cJSON_AddBoolToObject(root, "ok", bad == 0);
    cJSON_AddNumberToObject(root, "events", (double)count);
    if (bad == 0) {
        cJSON_AddStringToObject(root, "head", prev);
        if (pin != NULL) {
            cJSON *p = cJSON_AddObjectToObject(root, "pin");
            cJSON_AddNumberToObject(p, "events", (double)pin->events);
            cJSON_AddStringToObject(p, "head", pin->head);
        }
    } else {
        cJSON_AddNumberToObject(root, "first_bad_seq", (double)bad);
        cJSON_AddStringToObject(root, "reason", why);
    }
    *ok_out = bad == 0;
    return print_owned(root, out, err);
fail:
    sqlite3_finalize(stmt);
    sqlite3_finalize(rstmt);
    sqlite3_finalize(dstmt);
    return rc;
}

stw_code audit_head_json(sqlite3 *db, char **out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cJSON *root;
    int64_t events = 0;
    char head[STW_HASH_STR_MAX] = AUDIT_GENESIS;
    stw_code rc;

    /* seq runs 1..N without gaps in a valid chain, so the last seq is the count */
    rc = store_prepare(db, &stmt, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                       err);
    if (rc != STW_OK)
        return rc;
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW:
        events = sqlite3_column_int64(stmt, 0);
        snprintf(head, sizeof head, "%s", store_col_text(stmt, 1) ? store_col_text(stmt, 1) : "");
        break;
    case SQLITE_DONE: break;
    default: rc = store_error(db, err); break;
    }
    sqlite3_finalize(stmt);
    if (rc != STW_OK)
        return rc;
    root = cJSON_CreateObject();
    if (root == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    cJSON_AddNumberToObject(root, "events", (double)events);
    cJSON_AddStringToObject(root, "head", head);
    return print_owned(root, out, err);
}

stw_code audit_disclosures_json(sqlite3 *db, const char *subject, int64_t since, int64_t until,
                                char **out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cJSON *root = cJSON_CreateObject(), *list, *cur = NULL, *chunks = NULL;
    const char *cur_id = NULL;
    char *cur_id_buf = NULL;
    int step;
    stw_code rc;

    if (root == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    cJSON_AddStringToObject(root, "subject", subject);
    list = cJSON_AddArrayToObject(root, "disclosures");
    rc = store_prepare(db, &stmt,
                       /* one statement, so one snapshot: the runs (a seek per run whose
                        * time span meets the window), then the disclosures of the receipts
                        * after the last run (fewer than a run's worth: receipts_seq, then
                        * the disclosures' key); CROSS JOIN fixes the loop order (runs
                        * outside): the planner has no statistics to see that */
                       "WITH last(seq) AS (SELECT coalesce(max(upto_seq), 0) FROM subject_runs),"
                       " hit(query_id, rank) AS ("
                       "  SELECT s.query_id, s.rank FROM subject_runs r CROSS JOIN subject_index s"
                       "   ON s.run = r.run AND s.subject = ?1 AND s.at_ms >= ?2 AND s.at_ms < ?3"
                       "   WHERE r.upto_at >= ?2 AND r.from_at < ?3"
                       "  UNION ALL"
                       "  SELECT d.query_id, d.rank FROM last CROSS JOIN receipts t"
                       "   INDEXED BY receipts_seq CROSS JOIN disclosures d"
                       "   ON d.query_id = t.query_id WHERE t.seq > last.seq AND d.subject = ?1"
                       "   AND d.at_ms >= ?2 AND d.at_ms < ?3)"
                       /* the record decides: a run row naming another subject's
                        * disclosure, or a time outside the window, shows nothing */
                       " SELECT d.query_id, d.at_ms, d.principal, d.purpose, d.product, d.version,"
                       " d.chunk_id, d.source_system, d.document_id, d.rank"
                       " FROM hit JOIN disclosures d ON d.query_id = hit.query_id"
                       " AND d.rank = hit.rank WHERE d.subject = ?1 AND d.at_ms >= ?2"
                       " AND d.at_ms < ?3 ORDER BY d.at_ms, d.query_id, d.rank",
                       err);
    if (rc != STW_OK) {
        cJSON_Delete(root);
        return rc;
    }
    sqlite3_bind_text(stmt, 1, subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, since == STW_TIME_NONE ? INT64_MIN : since);
    sqlite3_bind_int64(stmt, 3, until == STW_TIME_NONE ? INT64_MAX : until);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *qid = store_col_text(stmt, 0);
        cJSON *c;
        if (cur_id == NULL || strcmp(cur_id, qid) != 0) {
            char at[32];
            free(cur_id_buf);
            cur_id_buf = util_strdup(qid);
            cur_id = cur_id_buf;
            cur = cJSON_CreateObject();
            cJSON_AddItemToArray(list, cur);
            stw_time_format(sqlite3_column_int64(stmt, 1), at);
            cJSON_AddStringToObject(cur, "query_id", qid);
            cJSON_AddStringToObject(cur, "at", at);
            cJSON_AddStringToObject(cur, "principal", store_col_text(stmt, 2));
            cJSON_AddStringToObject(cur, "purpose", store_col_text(stmt, 3));
            chunks = cJSON_AddArrayToObject(cur, "chunks");
        }
        c = cJSON_CreateObject();
        cJSON_AddItemToArray(chunks, c);
        cJSON_AddNumberToObject(c, "rank", (double)sqlite3_column_int64(stmt, 9));
        cJSON_AddStringToObject(c, "product", store_col_text(stmt, 4));
        cJSON_AddStringToObject(c, "version", store_col_text(stmt, 5));
        cJSON_AddStringToObject(c, "chunk_id", store_col_text(stmt, 6));
        if (store_col_text(stmt, 7))
            cJSON_AddStringToObject(c, "source_system", store_col_text(stmt, 7));
        if (store_col_text(stmt, 8))
            cJSON_AddStringToObject(c, "document_id", store_col_text(stmt, 8));
    }
    free(cur_id_buf);
    if (step != SQLITE_DONE) {
        rc = store_error(db, err);
        sqlite3_finalize(stmt);
        cJSON_Delete(root);
        return rc;
    }
    sqlite3_finalize(stmt);
    return print_owned(root, out, err);
}

/* Usage counts gathered from several parts of a window, merged by key at the end. */
struct ucount {
    char *key;
    int64_t queries, chunks;
};

struct ulist {
    struct ucount *v;
    size_t n, cap;
};

static void ulist_release(struct ulist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].key);
    free(l->v);
}

static int ucount_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ucount *)a)->key, ((const struct ucount *)b)->key);
}

/* Runs sql (binds ?1..?4 as given: two ints, then for rollups res and dim) and appends each
 * (key, queries, chunks) row. */
static stw_code usage_part(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t res,
                           const char *dim, struct ulist *l, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int step;
    stw_code rc = store_prepare(db, &stmt, sql, err);

    if (rc != STW_OK)
        return rc;
    sqlite3_bind_int64(stmt, 1, a);
    sqlite3_bind_int64(stmt, 2, b);
    if (dim != NULL) {
        sqlite3_bind_int64(stmt, 3, res);
        sqlite3_bind_text(stmt, 4, dim, -1, SQLITE_STATIC);
    }
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 16;
            struct ucount *v = realloc(l->v, cap * sizeof *v);
            if (v == NULL)
                break;
            l->v = v;
            l->cap = cap;
        }
        l->v[l->n].key = util_strdup(store_col_text(stmt, 0) ? store_col_text(stmt, 0) : "");
        if (l->v[l->n].key == NULL)
            break;
        l->v[l->n].queries = sqlite3_column_int64(stmt, 1);
        l->v[l->n].chunks = sqlite3_column_int64(stmt, 2);
        l->n++;
    }
    if (step == SQLITE_ROW)
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    else if (step != SQLITE_DONE)
        rc = store_error(db, err);
    sqlite3_finalize(stmt);
    return rc;
}

/* Adds usage in [a, b) (0 <= a < b): the whole days (level 0) or hours (level 1) inside it from
 * usage_rollup, and what is left at either end from the next level down; level 2 counts
 * receipts and disclosures themselves, at most an hour's worth at each end of the window. */
static stw_code usage_range(sqlite3 *db, const char *dim, int64_t a, int64_t b, int level,
                            struct ulist *l, stw_error *err)
{
    static const char *const raw[] = {
        "SELECT principal, count(*), sum(results) FROM receipts"
        " WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY 1",
        "SELECT purpose, count(*), sum(results) FROM receipts"
        " WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY 1",
        "SELECT d.product, count(DISTINCT d.query_id), count(*) FROM receipts r"
        " JOIN disclosures d ON d.query_id = r.query_id"
        " WHERE r.at_ms >= ?1 AND r.at_ms < ?2 GROUP BY 1",
    };
    int64_t res = level == 0 ? DAY_MS : HOUR_MS, b0, b1;
    stw_code rc = STW_OK;

    if (level == 2)
        return usage_part(db,
                          raw[strcmp(dim, "principal") == 0 ? 0
                              : strcmp(dim, "purpose") == 0 ? 1
                                                            : 2],
                          a, b, 0, NULL, l, err);
    b0 = a / res + (a % res != 0);
    b1 = b / res;
    if (b0 >= b1)
        return usage_range(db, dim, a, b, level + 1, l, err);
    if (a < b0 * res)
        rc = usage_range(db, dim, a, b0 * res, level + 1, l, err);
    if (rc == STW_OK)
        rc = usage_part(db,
                        "SELECT key, sum(queries), sum(chunks) FROM usage_rollup WHERE res = ?3"
                        " AND bucket >= ?1 AND bucket < ?2 AND dim = ?4 GROUP BY key",
                        b0, b1, res, dim, l, err);
    if (rc == STW_OK && b1 * res < b)
        rc = usage_range(db, dim, b1 * res, b, level + 1, l, err);
    return rc;
}

stw_code audit_usage_json(sqlite3 *db, const char *group_by, int64_t since, int64_t until,
                          char **out, stw_error *err)
{
    struct ulist l = {NULL, 0, 0};
    int64_t a = since == STW_TIME_NONE || since < 0 ? 0 : since;
    int64_t b = until == STW_TIME_NONE ? INT64_MAX : until;
    cJSON *root, *groups;
    stw_code rc = STW_OK;

    /* queries = receipts per group; chunks = disclosed rows per group. For products, a query
     * counts once per product it returned chunks from. */
    if (strcmp(group_by, "principal") != 0 && strcmp(group_by, "purpose") != 0 &&
        strcmp(group_by, "product") != 0)
        return stw_errorf(err, STW_INVALID, "invalid_group_by",
                          "'group_by' must be principal, product or purpose");
    if (a < b)
        rc = usage_range(db, group_by, a, b, 0, &l, err);
    if (rc != STW_OK) {
        ulist_release(&l);
        return rc;
    }
    if (l.n > 1)
        qsort(l.v, l.n, sizeof *l.v, ucount_cmp);
    root = cJSON_CreateObject();
    if (root == NULL) {
        ulist_release(&l);
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    }
    cJSON_AddStringToObject(root, "group_by", group_by);
    groups = cJSON_AddArrayToObject(root, "groups");
    for (size_t i = 0; i < l.n;) {
        int64_t q = 0, c = 0;
        size_t j = i;
        cJSON *g;
        for (; j < l.n && strcmp(l.v[j].key, l.v[i].key) == 0; j++) {
            q += l.v[j].queries;
            c += l.v[j].chunks;
        }
        g = cJSON_CreateObject();
        cJSON_AddItemToArray(groups, g);
        cJSON_AddStringToObject(g, group_by, l.v[i].key);
        cJSON_AddNumberToObject(g, "queries", (double)q);
        cJSON_AddNumberToObject(g, "chunks", (double)c);
        i = j;
    }
    ulist_release(&l);
    return print_owned(root, out, err);
}
