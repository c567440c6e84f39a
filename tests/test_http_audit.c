/* test_http_audit.c - the audit trail over HTTP and offline (docs/api.md "Governance",
 * docs/cli.md "audit").
 *
 *  - GET /v1/audit/events pages through the events in seq order with its `next` cursor; the
 *    pages join without gaps or repeats, every event carries seq, at, type, prev_hash and hash,
 *    and each prev_hash is the previous event's hash; type= and principal= filter;
 *  - GET /v1/audit/verify and `steward audit verify --data DIR` agree that the chain is intact;
 *  - an event edited behind the store's back (trigger dropped, detail rewritten) is caught at
 *    exactly that seq, offline (exit 1, ok:false, first_bad_seq) and over HTTP;
 *  - a consumer may not read the trail (403).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "harness.h"

#define DIM 4

static th_server srv;
static char *consumer_key, *auditor_key;

static int setup(void)
{
    cJSON *arr = cJSON_CreateArray();
    int rc = 0;

    rc |= th_product_create(&srv, "au-notes", "clinical", DIM, "cosine", "PSY", "");
    rc |= th_version_create(&srv, "au-notes", "v1");
    for (int i = 0; i < 6; i++) {
        char id[16];
        float v[DIM] = {(float)i, 1, (float)(i % 2), 0.5f};
        snprintf(id, sizeof id, "au-%d", i);
        cJSON_AddItemToArray(arr, th_chunk_new(id, "Plan.", v, DIM, "N", "", "ehr", "doc-1", "plan",
                                               "patient-0001", NULL));
    }
    rc |= th_chunks_add(&srv, "au-notes", "v1", arr, NULL, NULL);
    cJSON_Delete(arr);
    rc |= th_publish(&srv, "au-notes", "v1", NULL);
    consumer_key = th_principal_create(&srv, "au-consumer", "consumer", "");
    auditor_key = th_principal_create(&srv, "au-auditor", "auditor", "");
    if (rc || !consumer_key || !auditor_key)
        return -1;
    rc |= th_grant(&srv, "au-consumer", "au-notes", NULL, "TREAT", "V", "", NULL);
    /* some queries, one refusal and one failed authentication, to fill the trail */
    for (int i = 0; i < 7; i++) {
        th_resp r;
        cJSON *q = cJSON_CreateObject();
        float v[DIM] = {1, (float)i, 0, 0};
        cJSON_AddItemToObject(q, "vector", th_vec_array(v, DIM));
        cJSON_AddNumberToObject(q, "k", 3);
        cJSON_AddStringToObject(q, "purpose", i == 6 ? "HMARKT" : "TREAT");
        cJSON_AddItemToObject(q, "products", th_str_array("au-notes"));
        th_req(&srv, "POST", consumer_key, q, &r, "/v1/query");
        TH_CHECK_STATUS(&r, i == 6 ? 403 : 200);
        th_resp_release(&r);
        cJSON_Delete(q);
    }
    {
        th_resp r;
        th_request(&srv, "GET", "/v1/products", "stw_not_a_real_key", NULL, 0, &r);
        TH_CHECK_STATUS(&r, 401);
        th_resp_release(&r);
    }
    return rc;
}

/* Pages through all events with limit=3; returns how many, and checks the chain links. */
static long walk_events(const char *filter, long *last_seq)
{
    char cursor[128] = "";
    char prev_hash[160] = "";
    long n = 0, prev_seq = 0;

    for (int page = 0; page < 10000; page++) {
        th_resp r;
        const cJSON *it;
        int in_page = 0;
        th_req(&srv, "GET", auditor_key, NULL, &r, "/v1/audit/events?limit=3%s%s%s", filter,
               cursor[0] ? "&after=" : "", cursor);
        if (!TH_CHECK_STATUS(&r, 200)) {
            th_resp_release(&r);
            break;
        }
        cJSON_ArrayForEach(it, th_get(r.json, "events"))
        {
            long seq = (long)th_num(it, "seq", -1);
            const char *h = th_str(it, "hash"), *ph = th_str(it, "prev_hash");
            in_page++;
            n++;
            CHECKF(seq > prev_seq, "events out of order: seq %ld after %ld", seq, prev_seq);
            if (filter[0] == '\0') {
                CHECKF(seq == prev_seq + 1, "gap or repeat: seq %ld after %ld", seq, prev_seq);
                if (prev_hash[0])
                    CHECKF(ph && strcmp(ph, prev_hash) == 0,
                           "event %ld: prev_hash %s, previous hash %s", seq, ph ? ph : "(none)",
                           prev_hash);
            }
            CHECKF(h && *h, "event %ld has no hash", seq);
            CHECKF(th_str(it, "at") && th_str(it, "type"), "event %ld lacks at/type", seq);
            snprintf(prev_hash, sizeof prev_hash, "%s", h ? h : "");
            prev_seq = seq;
        }
        CHECKF(in_page <= 3, "a page of limit=3 held %d events", in_page);
        const cJSON *next = th_get(r.json, "next");
        if (cJSON_IsString(next) && next->valuestring[0])
            snprintf(cursor, sizeof cursor, "%s", next->valuestring);
        else if (cJSON_IsNumber(next))
            snprintf(cursor, sizeof cursor, "%.0f", next->valuedouble);
        else
            cursor[0] = '\0';
        th_resp_release(&r);
        if (cursor[0] == '\0' || in_page == 0)
            break;
    }
    *last_seq = prev_seq;
    return n;
}

static void test_events(long *nevents)
{
    long last = 0, n;
    th_resp r;

    n = walk_events("", &last);
    CHECKF(n >= 10, "only %ld events after setup", n);
    CHECK_EQ_INT(last, n);
    *nevents = n;

    /* filters only narrow, and narrow to what they name */
    static const char *const types[] = {"query", "query_denied", "auth_failed", "publish", "grant"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const cJSON *it;
        int count = 0;
        th_req(&srv, "GET", auditor_key, NULL, &r, "/v1/audit/events?type=%s&limit=1000", types[i]);
        if (TH_CHECK_STATUS(&r, 200))
            cJSON_ArrayForEach(it, th_get(r.json, "events"))
            {
                CHECK_EQ_STR(th_str(it, "type"), types[i]);
                count++;
            }
        CHECKF(count >= 1, "no '%s' event", types[i]);
        if (strcmp(types[i], "query") == 0)
            CHECK_EQ_INT(count, 6);
        th_resp_release(&r);
    }
    th_request(&srv, "GET", "/v1/audit/events?principal=au-consumer&limit=1000", auditor_key, NULL,
               0, &r);
    if (TH_CHECK_STATUS(&r, 200)) {
        const cJSON *it;
        int count = 0;
        cJSON_ArrayForEach(it, th_get(r.json, "events"))
        {
            CHECK_EQ_STR(th_str(it, "principal"), "au-consumer");
            count++;
        }
        CHECK_EQ_INT(count, 7); /* 6 queries + 1 refusal */
    }
    th_resp_release(&r);

    th_request(&srv, "GET", "/v1/audit/events", consumer_key, NULL, 0, &r);
    TH_CHECK_ERROR(&r, 403, NULL, NULL);
    th_resp_release(&r);
    th_request(&srv, "GET", "/v1/audit/verify", consumer_key, NULL, 0, &r);
    TH_CHECK_ERROR(&r, 403, NULL, NULL);
    th_resp_release(&r);
}

static void check_verify_json(const char *what, const char *text, int ok, long events, long bad_seq)
{
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!CHECKF(j != NULL, "%s printed no JSON: '%s'", what, text ? text : "(null)"))
        return;
    CHECKF(cJSON_IsBool(th_get(j, "ok")) && cJSON_IsTrue(th_get(j, "ok")) == ok,
           "%s: expected ok:%s, got %s", what, ok ? "true" : "false", text);
    if (ok) {
        CHECKF((long)th_num(j, "events", -1) == events, "%s: events %.0f, expected %ld", what,
               th_num(j, "events", -1), events);
        CHECKF(th_is_sha256(th_str(j, "head"), 0), "%s: head %s", what,
               th_str(j, "head") ? th_str(j, "head") : "(none)");
    } else {
        CHECKF((long)th_num(j, "first_bad_seq", -1) == bad_seq,
               "%s: first_bad_seq %.0f, expected %ld: %s", what, th_num(j, "first_bad_seq", -1),
               bad_seq, text);
    }
    cJSON_Delete(j);
}

static void test_verify_and_tamper(long nevents)
{
    th_resp r;
    char *out = NULL;
    char *head = NULL;
    long events_now;
    sqlite3 *db = NULL;
    char path[TH_PATH_MAX + 32];
    long bad = nevents / 2;

    th_request(&srv, "GET", "/v1/audit/verify", auditor_key, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200)) {
        events_now = (long)th_num(r.json, "events", -1);
        CHECKF(events_now >= nevents, "verify counts %ld events, the walk found %ld", events_now,
               nevents);
        head = r.json ? cJSON_PrintUnformatted(r.json) : NULL;
        check_verify_json("GET /v1/audit/verify", head, 1, events_now, 0);
    } else {
        events_now = nevents;
    }
    th_resp_release(&r);

    /* offline, with the server stopped: same verdict */
    th_halt(&srv);
    {
        char *args[] = {"audit", "verify", "--data", srv.data, NULL};
        int st = th_run(&srv, args, &out);
        CHECKF(st == 0, "`steward audit verify` on an intact store exited %d: %s", st,
               out ? out : "");
        check_verify_json("steward audit verify", out, 1, events_now, 0);
        free(out);
        out = NULL;
    }

    /* edit one event behind the store's back */
    snprintf(path, sizeof path, "%s/steward.db", srv.data);
    if (!CHECK(sqlite3_open(path, &db) == SQLITE_OK))
        goto out;
    {
        char sql[256];
        char *errmsg = NULL;
        snprintf(sql, sizeof sql,
                 "DROP TRIGGER IF EXISTS audit_events_no_update;"
                 "UPDATE audit_events SET detail = '{\"tampered\":true}' WHERE seq = %ld;",
                 bad);
        CHECKF(sqlite3_exec(db, sql, NULL, NULL, &errmsg) == SQLITE_OK && sqlite3_changes(db) == 1,
               "tampering failed: %s", errmsg ? errmsg : "no row changed");
        sqlite3_free(errmsg);
    }
    sqlite3_close(db);
    {
        char *args[] = {"audit", "verify", "--data", srv.data, NULL};
        int st = th_run(&srv, args, &out);
        CHECKF(st == 1, "`steward audit verify` on a tampered store exited %d: %s", st,
               out ? out : "");
        check_verify_json("steward audit verify (tampered)", out, 0, 0, bad);
        free(out);
        out = NULL;
    }
    if (th_resume(&srv) != 0)
        goto out;
    th_request(&srv, "GET", "/v1/audit/verify", auditor_key, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200)) {
        char *text = cJSON_PrintUnformatted(r.json);
        check_verify_json("GET /v1/audit/verify (tampered)", text, 0, 0, bad);
        cJSON_free(text);
    }
    th_resp_release(&r);
out:
    cJSON_free(head);
}

int main(int argc, char **argv)
{
    long nevents = 0;

    if (th_start(&srv, th_steward_bin(argc, argv)) != 0 || setup() != 0) {
        CHECK_FAIL("setup failed");
        goto out;
    }
    test_events(&nevents);
    test_verify_and_tamper(nevents);
out:
    th_stop(&srv);
    free(consumer_key);
    free(auditor_key);
    return check_summary("http_audit");
}
