/* audit.c - append-only, hash-chained audit trail, per-query receipts, governance reads.
 *
 * hash(n) = SHA-256(hash(n-1) || canonical_json({"at","detail","principal","seq","type"})),
 * with hash(0) = AUDIT_GENESIS. Receipts (the lineage of one answer) and disclosure rows (one
 * per returned chunk, for the accounting of disclosures per subject) are written in the same
 * transaction as the query event: an answer never leaves without its record. Query vectors
 * are kept only as a SHA-256; chunk text never enters the trail. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "limits.h"
#include "store.h"
#include "util.h"

/* canonical({"at","detail","principal","seq","type"}) into an owned string. */
static char *event_canonical(int64_t seq, int64_t at_ms, const char *type, const char *principal,
                             const char *detail_canon)
{
    cJSON *o = cJSON_CreateObject();
    char at[32], *tmp, *out;

    if (o == NULL)
        return NULL;
    stw_time_format(at_ms, at);
    /* keys inserted in sorted order: the canonical form needs no re-sort */
    cJSON_AddStringToObject(o, "at", at);
    cJSON_AddItemToObject(o, "detail", cJSON_Parse(detail_canon));
    if (principal != NULL)
        cJSON_AddStringToObject(o, "principal", principal);
    else
        cJSON_AddNullToObject(o, "principal");
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddStringToObject(o, "type", type);
    tmp = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    out = tmp ? util_canonical_json(tmp) : NULL;
    cJSON_free(tmp);
    return out;
}

static void chain_hash(const char *prev_hash, const char *canon, char out[STW_HASH_STR_MAX])
{
    size_t lp = strlen(prev_hash), lc = strlen(canon);
    unsigned char digest[SHA256_LEN];
    char *buf = malloc(lp + lc);

    if (buf == NULL) {
        out[0] = '\0';
        return;
    }
    memcpy(buf, prev_hash, lp);
    memcpy(buf + lp, canon, lc);
    util_sha256(buf, lp + lc, digest);
    util_hash_str(digest, out);
    free(buf);
}

stw_code audit_append(sqlite3 *db, int64_t at_ms, const char *type, const char *principal,
                      const char *detail_json, int64_t *seq_out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    char prev[STW_HASH_STR_MAX] = AUDIT_GENESIS, hash[STW_HASH_STR_MAX];
    char *detail = NULL, *canon = NULL;
    int64_t seq = 1;
    stw_code rc;

    detail = util_canonical_json(detail_json);
    if (detail == NULL)
        return stw_errorf(err, STW_INTERNAL, "audit_detail", "audit detail is not JSON");
    rc = store_prepare(db, &stmt, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                       err);
    if (rc != STW_OK)
        goto done;
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW:
        seq = sqlite3_column_int64(stmt, 0) + 1;
        snprintf(prev, sizeof prev, "%s", store_col_text(stmt, 1));
        break;
    case SQLITE_DONE: break;
    default: rc = store_error(db, err); goto done;
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    canon = event_canonical(seq, at_ms, type, principal, detail);
    if (canon == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    chain_hash(prev, canon, hash);
    rc = store_prepare(db, &stmt,
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
    sqlite3_bind_text(stmt, 6, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, hash, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    if (seq_out)
        *seq_out = seq;
done:
    sqlite3_finalize(stmt);
    free(detail);
    free(canon);
    return rc;
}

stw_code audit_record_query(sqlite3 *db, const struct audit_receipt *r, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cJSON *rec = NULL, *detail = NULL, *results;
    char *rec_json = NULL, *detail_json = NULL, at[32];
    int64_t seq = 0;
    stw_code rc = STW_OK;

    stw_time_format(r->at_ms, at);
    rec = cJSON_CreateObject();
    detail = cJSON_CreateObject();
    if (rec == NULL || detail == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    cJSON_AddStringToObject(rec, "query_id", r->query_id);
    cJSON_AddStringToObject(rec, "at", at);
    cJSON_AddStringToObject(rec, "principal", r->principal);
    cJSON_AddStringToObject(rec, "purpose", r->purpose);
    if (r->reason)
        cJSON_AddStringToObject(rec, "reason", r->reason);
    cJSON_AddBoolToObject(rec, "break_glass", r->break_glass);
    cJSON_AddBoolToObject(rec, "text_withheld", r->text_withheld);
    cJSON_AddNumberToObject(rec, "policy_version", (double)r->policy_version);
    cJSON_AddItemToObject(rec, "versions", cJSON_Parse(r->versions_json));
    cJSON_AddItemToObject(rec, "filter", r->filter_json ? cJSON_Parse(r->filter_json)
                                                        : cJSON_CreateNull());
    cJSON_AddNumberToObject(rec, "k", (double)r->k);
    cJSON_AddStringToObject(rec, "vector_sha256", r->vector_sha256);
    results = cJSON_AddArrayToObject(rec, "results");
    for (size_t i = 0; results && i < r->nhits; i++) {
        const struct audit_hit *h = &r->hits[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(results, o);
        cJSON_AddNumberToObject(o, "rank", (double)h->rank);
        cJSON_AddNumberToObject(o, "score", h->score);
        cJSON_AddStringToObject(o, "product", h->product);
        cJSON_AddStringToObject(o, "version", h->version);
        cJSON_AddStringToObject(o, "chunk_id", h->chunk_id);
        cJSON_AddItemToObject(o, "source_system", h->source_system
                                                      ? cJSON_CreateString(h->source_system)
                                                      : cJSON_CreateNull());
        cJSON_AddItemToObject(o, "document_id", h->document_id
                                                    ? cJSON_CreateString(h->document_id)
                                                    : cJSON_CreateNull());
        cJSON_AddItemToObject(o, "subject",
                              h->subject ? cJSON_CreateString(h->subject) : cJSON_CreateNull());
    }
    /* the event carries the lineage too (ids and hashes only), so the chain covers it */
    cJSON_AddStringToObject(detail, "query_id", r->query_id);
    cJSON_AddStringToObject(detail, "purpose", r->purpose);
    cJSON_AddNumberToObject(detail, "policy_version", (double)r->policy_version);
    cJSON_AddItemToObject(detail, "versions", cJSON_Parse(r->versions_json));
    cJSON_AddNumberToObject(detail, "k", (double)r->k);
    cJSON_AddNumberToObject(detail, "results", (double)r->nhits);
    cJSON_AddStringToObject(detail, "vector_sha256", r->vector_sha256);
    if (r->break_glass)
        cJSON_AddBoolToObject(detail, "break_glass", 1);
    rec_json = cJSON_PrintUnformatted(rec);
    detail_json = cJSON_PrintUnformatted(detail);
    if (rec_json == NULL || detail_json == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    rc = audit_append(db, r->at_ms, "query", r->principal, detail_json, &seq, err);
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
        rc = audit_append(db, r->at_ms, "break_glass", r->principal, bg_json, NULL, err);
        cJSON_free(bg_json);
        if (rc != STW_OK)
            goto done;
    }
    rc = store_prepare(db, &stmt,
                       "INSERT INTO receipts(query_id, seq, at_ms, principal, purpose,"
                       " policy_version, results, receipt) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                       err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_text(stmt, 1, r->query_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, seq);
    sqlite3_bind_int64(stmt, 3, r->at_ms);
    sqlite3_bind_text(stmt, 4, r->principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, r->purpose, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, r->policy_version);
    sqlite3_bind_int64(stmt, 7, (int64_t)r->nhits);
    sqlite3_bind_text(stmt, 8, rec_json, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = store_error(db, err);
        goto done;
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    rc = store_prepare(db, &stmt,
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
        sqlite3_bind_int64(stmt, 3, r->at_ms);
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
done:
    sqlite3_finalize(stmt);
    cJSON_Delete(rec);
    cJSON_Delete(detail);
    cJSON_free(rec_json);
    cJSON_free(detail_json);
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

stw_code audit_events_json(sqlite3 *db, const stw_event_filter *f, char **out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cJSON *root = cJSON_CreateObject(), *events;
    size_t n = 0, limit = f->limit;
    int64_t last = 0;
    int step;
    stw_code rc;

    if (root == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    events = cJSON_AddArrayToObject(root, "events");
    rc = store_prepare(db, &stmt,
                       "SELECT seq, at_ms, type, principal, detail, prev_hash, hash"
                       " FROM audit_events WHERE seq > ?1 AND at_ms >= ?2 AND at_ms < ?3"
                       " AND (?4 IS NULL OR principal = ?4) AND (?5 IS NULL OR type = ?5)"
                       " ORDER BY seq LIMIT ?6",
                       err);
    if (rc != STW_OK) {
        cJSON_Delete(root);
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, f->after_seq);
    sqlite3_bind_int64(stmt, 2, f->since_ms == STW_TIME_NONE ? INT64_MIN : f->since_ms);
    sqlite3_bind_int64(stmt, 3, f->until_ms == STW_TIME_NONE ? INT64_MAX : f->until_ms);
    store_bind_text(stmt, 4, f->principal);
    store_bind_text(stmt, 5, f->type);
    sqlite3_bind_int64(stmt, 6, (int64_t)limit + 1);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == limit)
            break; /* one more row exists: there is a next page */
        last = sqlite3_column_int64(stmt, 0);
        cJSON_AddItemToArray(events, event_json(stmt));
        n++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_error(db, err);
        sqlite3_finalize(stmt);
        cJSON_Delete(root);
        return rc;
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
}

/* Why row `stmt` (seq, at_ms, type, principal, detail, prev_hash, hash) breaks the chain after
 * `prev`, or NULL if it holds; its recomputed hash goes to hash_out. Besides the hashes, each
 * column must have the type and form audit_append writes: a REAL at_ms that truncates to the
 * same integer, or a re-indented detail, hashes the same but is still an edited row. */
static const char *event_check(sqlite3_stmt *stmt, const char *prev, char hash_out[STW_HASH_STR_MAX])
{
    int64_t seq = sqlite3_column_int64(stmt, 0);
    const char *detail = store_col_text(stmt, 4), *why = NULL;
    char *dcanon = NULL, *canon = NULL;

    if (sqlite3_column_type(stmt, 1) != SQLITE_INTEGER)
        return "at_ms is not an integer";
    if (sqlite3_column_type(stmt, 2) != SQLITE_TEXT || sqlite3_column_type(stmt, 4) != SQLITE_TEXT ||
        sqlite3_column_type(stmt, 5) != SQLITE_TEXT || sqlite3_column_type(stmt, 6) != SQLITE_TEXT ||
        (sqlite3_column_type(stmt, 3) != SQLITE_TEXT && sqlite3_column_type(stmt, 3) != SQLITE_NULL))
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
    chain_hash(prev, canon, hash_out);
    if (strcmp(prev, store_col_text(stmt, 5)) != 0)
        why = "prev_hash does not match the previous event";
    else if (strcmp(hash_out, store_col_text(stmt, 6)) != 0)
        why = "hash does not match the event's content";
done:
    free(dcanon);
    free(canon);
    return why;
}

stw_code audit_verify_json(sqlite3 *db, const stw_audit_pin *pin, char **out, int *ok_out,
                           stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    char prev[STW_HASH_STR_MAX] = AUDIT_GENESIS, hash[STW_HASH_STR_MAX];
    int64_t count = 0, bad = 0, expect_seq = 1;
    const char *why = NULL;
    cJSON *root;
    int step;
    stw_code rc;

    rc = store_prepare(db, &stmt,
                       "SELECT seq, at_ms, type, principal, detail, prev_hash, hash"
                       " FROM audit_events ORDER BY seq",
                       err);
    if (rc != STW_OK)
        return rc;
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
        if (why == NULL && pin != NULL && seq == pin->events && strcmp(hash, pin->head) != 0)
            why = "the event does not match the pinned head: the chain was rewritten";
        if (why != NULL) {
            bad = seq;
            break;
        }
        snprintf(prev, sizeof prev, "%s", hash);
        expect_seq = seq + 1;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_error(db, err);
        sqlite3_finalize(stmt);
        return rc;
    }
    sqlite3_finalize(stmt);
    if (bad == 0 && pin != NULL && count < pin->events) {
        why = "the chain is shorter than the pinned head: its tail was cut off";
        bad = count + 1;
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
                       "SELECT query_id, at_ms, principal, purpose, product, version, chunk_id,"
                       " source_system, document_id, rank FROM disclosures"
                       " WHERE subject = ?1 AND at_ms >= ?2 AND at_ms < ?3"
                       " ORDER BY at_ms, query_id, rank",
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

stw_code audit_usage_json(sqlite3 *db, const char *group_by, int64_t since, int64_t until,
                          char **out, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cJSON *root, *groups;
    const char *sql;
    int step;
    stw_code rc;

    /* queries count per group; chunks = disclosed rows per group */
    if (strcmp(group_by, "principal") == 0)
        sql = "SELECT principal, count(*), sum(results) FROM receipts"
              " WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY principal ORDER BY principal";
    else if (strcmp(group_by, "purpose") == 0)
        sql = "SELECT purpose, count(*), sum(results) FROM receipts"
              " WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY purpose ORDER BY purpose";
    else if (strcmp(group_by, "product") == 0)
        sql = "SELECT product, count(DISTINCT query_id), count(*) FROM disclosures"
              " WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY product ORDER BY product";
    else
        return stw_errorf(err, STW_INVALID, "invalid_group_by",
                          "'group_by' must be principal, product or purpose");
    root = cJSON_CreateObject();
    if (root == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    cJSON_AddStringToObject(root, "group_by", group_by);
    groups = cJSON_AddArrayToObject(root, "groups");
    rc = store_prepare(db, &stmt, sql, err);
    if (rc != STW_OK) {
        cJSON_Delete(root);
        return rc;
    }
    sqlite3_bind_int64(stmt, 1, since == STW_TIME_NONE ? INT64_MIN : since);
    sqlite3_bind_int64(stmt, 2, until == STW_TIME_NONE ? INT64_MAX : until);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddItemToArray(groups, g);
        cJSON_AddStringToObject(g, group_by, store_col_text(stmt, 0));
        cJSON_AddNumberToObject(g, "queries", (double)sqlite3_column_int64(stmt, 1));
        cJSON_AddNumberToObject(g, "chunks", (double)sqlite3_column_int64(stmt, 2));
    }
    if (step != SQLITE_DONE) {
        rc = store_error(db, err);
        sqlite3_finalize(stmt);
        cJSON_Delete(root);
        return rc;
    }
    sqlite3_finalize(stmt);
    return print_owned(root, out, err);
}
