/* test_faults.c - the real server under storage faults and a stop in mid-request (issue #8).
 *
 * Every fault must give a clear 503 with a JSON error (docs/api.md, "Errors") and leave nothing
 * half-written; the same request must succeed once the fault is gone:
 *
 *  - busy: a raw SQLite connection of this test holds BEGIN IMMEDIATE on DATA/steward.db for
 *    longer than the busy timeout (STW_BUSY_TIMEOUT_MS, 5 s). A chunk batch, a grant and a
 *    publish each wait the timeout out and get 503 storage_unavailable; reads still work. A
 *    query is answered at once (its receipt is one append to the receipt journal, src/journal.h),
 *    but a read of the trail waits for the receipt and then gets 503 audit_unavailable. The
 *    server is then SIGKILLed with that receipt in the journal only, and half of another
 *    record is appended to the journal (a write the crash cut short). After the lock goes and
 *    the server restarts: the receipt is in the trail (the torn record is skipped), the draft has the chunks it had, no
 *    grant and no policy version were added, the version is still a draft with no folder, the
 *    chain has no other new event; then the same requests succeed.
 *  - disk full: the server runs with RLIMIT_FSIZE at 1 MiB (tests/harness.h: fsize_limit), so
 *    any write past 1 MiB in any file fails with EFBIG. A chunk batch larger than that (its WAL
 *    frames) and a publish whose vectors file is larger get 503 (storage_full or
 *    storage_unavailable); small writes still work; the draft keeps its chunks, stays a draft,
 *    and versions/<product>/ holds neither the version's folder nor a ".tmp-*" one. Restarted
 *    without the limit, the same batch and publish succeed and `steward verify-version`
 *    accepts the published files.
 *  - SIGTERM drain: SIGTERM arrives while a chunk batch is half uploaded. The server stops
 *    accepting connections at once, the batch completes with its normal 200, and the process
 *    exits 0; restarted, the draft holds the batch.
 *
 * One summary line per case on stdout. The steward binary is argv[1].
 */
#define _XOPEN_SOURCE 700
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sqlite3.h>

#include "harness.h"

#define BUSY_DIM   8
#define FULL_DIM   256                 /* 1 KiB of float32 per chunk */
#define FULL_LIMIT (1024ull * 1024ull) /* RLIMIT_FSIZE of the disk-full server */
#define FULL_BASE  1200                /* chunks before the fault: a 1.2 MB vectors file */
#define FULL_BATCH 600                 /* the batch that cannot fit: ~1.5 MB of WAL frames */
#define DRAIN_DIM  64
#define DRAIN_N    3000

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;

static float frnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) % 2000001) / 1000000.0f - 1.0f;
}

/* "ok", or "FAILED" when checks failed since f0 (for the summary lines). */
static const char *verdict(long f0)
{
    return check_failures > f0 ? "FAILED" : "ok";
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A batch body {"chunks":[...]} of n chunks "<prefix>-<i>" (owned, free()). text_len bytes of
 * text each. */
static char *batch_body(const char *prefix, size_t first, size_t n, size_t dim, size_t text_len)
{
    cJSON *b = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    char *text = malloc(text_len + 1), *out;
    float *v = malloc(dim * sizeof *v);

    if (b == NULL || arr == NULL || text == NULL || v == NULL) {
        cJSON_Delete(b);
        cJSON_Delete(arr);
        free(text);
        free(v);
        return NULL;
    }
    memset(text, 'x', text_len);
    text[text_len] = '\0';
    for (size_t i = first; i < first + n; i++) {
        char id[64], doc[64], subj[32];

        for (size_t j = 0; j < dim; j++)
            v[j] = frnd();
        v[0] += 2.0f; /* never all-zero under cosine */
        snprintf(id, sizeof id, "%s-%zu", prefix, i);
        snprintf(doc, sizeof doc, "doc-%zu", i / 4);
        snprintf(subj, sizeof subj, "pt-%zu", i % 50);
        cJSON_AddItemToArray(arr, th_chunk_new(id, text, v, dim, "N", "", "ehr", doc, "note", subj,
                                               "2026-01-02T03:04:05Z"));
    }
    cJSON_AddItemToObject(b, "chunks", arr);
    out = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    free(text);
    free(v);
    return out;
}

static long post_text(th_server *s, const char *path, const char *key, const char *body, th_resp *r)
{
    return th_request(s, "POST", path, key, body, body ? strlen(body) : 0, r);
}

/* The version's state and chunk count over HTTP (state "" if the GET failed). */
static long version_chunks(th_server *s, const char *product, const char *version, char *state,
                           size_t cap)
{
    th_resp r;
    long n = -1;

    state[0] = '\0';
    th_req(s, "GET", s->admin_key, NULL, &r, "/v1/products/%s/versions/%s", product, version);
    if (TH_CHECK_STATUS(&r, 200)) {
        const char *st = th_str(r.json, "state");
        snprintf(state, cap, "%s", st ? st : "");
        n = (long)th_num(r.json, "chunks", -1);
    }
    th_resp_release(&r);
    return n;
}

/* Events in the audit chain (GET /v1/audit/verify), -1 if it failed or the chain is broken. */
static long audit_events(th_server *s)
{
    th_resp r;
    long n = -1;

    th_req(s, "GET", s->admin_key, NULL, &r, "/v1/audit/verify");
    if (TH_CHECK_STATUS(&r, 200) &&
        CHECKF(cJSON_IsTrue(th_get(r.json, "ok")), "audit chain broken: %s", r.body))
        n = (long)th_num(r.json, "events", -1);
    th_resp_release(&r);
    return n;
}

/* Policy version and number of active grants. */
static void policy_state(th_server *s, long *version, long *grants)
{
    th_resp r;

    *version = *grants = -1;
    th_req(s, "GET", s->admin_key, NULL, &r, "/v1/policy");
    if (TH_CHECK_STATUS(&r, 200)) {
        *version = (long)th_num(r.json, "version", -1);
        *grants = cJSON_GetArraySize(th_get(r.json, "grants"));
    }
    th_resp_release(&r);
}

/* A crash in the middle of a receipt's write: the first 40 bytes of the receipt journal's
 * last segment (a record's frame and the start of its payload) appended to its end. The
 * segment's name goes to seg (cap bytes). 0 on success. */
static int tear_journal(const th_server *s, char *seg, size_t cap)
{
    char dir[TH_PATH_MAX + 32], path[TH_PATH_MAX + 32 + 258], last[256] = "";
    unsigned char head[40];
    struct dirent *e;
    DIR *d;
    FILE *f;
    size_t got = 0;

    snprintf(dir, sizeof dir, "%s/receipts", s->data);
    d = opendir(dir);
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strlen(e->d_name) == 16 && strcmp(e->d_name + 12, ".log") == 0 &&
            strcmp(e->d_name, last) > 0)
            snprintf(last, sizeof last, "%s", e->d_name);
    closedir(d);
    if (last[0] == '\0')
        return -1;
    snprintf(seg, cap, "%s", last);
    snprintf(path, sizeof path, "%s/%s", dir, last);
    f = fopen(path, "r+b");
    if (f == NULL)
        return -1;
    got = fread(head, 1, sizeof head, f);
    if (got != sizeof head || fseek(f, 0, SEEK_END) != 0 ||
        fwrite(head, 1, sizeof head, f) != sizeof head) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Entries of DATA/versions/<product>/ named exactly `version` or starting with ".tmp-". */
static int leftover_dirs(const th_server *s, const char *product, const char *version, char *names,
                         size_t cap)
{
    char path[TH_PATH_MAX + 300];
    DIR *d;
    struct dirent *e;
    int n = 0;

    names[0] = '\0';
    snprintf(path, sizeof path, "%s/versions/%s", s->data, product);
    d = opendir(path);
    if (d == NULL)
        return 0; /* never created: nothing left over */
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, version) == 0 || strncmp(e->d_name, ".tmp-", 5) == 0) {
            size_t len = strlen(names);
            snprintf(names + len, cap - len, "%s%s", n ? "," : "", e->d_name);
            n++;
        }
    }
    closedir(d);
    return n;
}

/* A query body for one product (k 3, TREAT). Owned. */
static char *query_body(const char *product, size_t dim)
{
    cJSON *q = cJSON_CreateObject();
    float v[FULL_DIM];
    char *out;

    for (size_t j = 0; j < dim; j++)
        v[j] = frnd();
    v[0] += 2.0f;
    cJSON_AddItemToObject(q, "vector", th_vec_array(v, dim));
    cJSON_AddNumberToObject(q, "k", 3);
    cJSON_AddStringToObject(q, "purpose", "TREAT");
    cJSON_AddItemToObject(q, "products", th_str_array(product));
    out = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    return out;
}

static char *grant_body(const char *principal, const char *product)
{
    cJSON *g = cJSON_CreateObject();
    char *out;

    cJSON_AddStringToObject(g, "principal", principal);
    cJSON_AddStringToObject(g, "product", product);
    cJSON_AddItemToObject(g, "purposes", th_str_array("TREAT"));
    cJSON_AddStringToObject(g, "clearance", "N");
    cJSON_AddItemToObject(g, "compartments", th_str_array(""));
    out = cJSON_PrintUnformatted(g);
    cJSON_Delete(g);
    return out;
}

/* ---- (a) SQLite busy ---------------------------------------------------------------------- */

/* One request expected to wait out the busy timeout and fail with 503 code. */
static void expect_busy_503(th_server *s, const char *what, const char *path, const char *key,
                            const char *body, const char *code, double *secs)
{
    th_resp r;
    double t0 = now_s();

    post_text(s, path, key, body, &r);
    *secs = now_s() - t0;
    if (!TH_CHECK_ERROR(&r, 503, code, NULL))
        fprintf(stderr, "  (%s while the store was locked)\n", what);
    /* it waited for the lock (5 s busy timeout) rather than failing at once, and not forever */
    CHECKF(*secs >= 4.0 && *secs < 60.0, "%s answered after %.2f s; want the ~5 s busy timeout",
           what, *secs);
    th_resp_release(&r);
}

static void test_busy(th_server *s)
{
    static const char P[] = "busy", V0[] = "b0", V1[] = "b1";
    char path[256], dbpath[TH_PATH_MAX + 32], state[32], left[512];
    char *rag = NULL, *rag2 = NULL, *batch = NULL, *more = NULL, *grant = NULL, *query = NULL;
    long chunks0, ev0, pv0, gr0, pv, gr;
    double t_batch = 0, t_grant = 0, t_pub = 0, t_query = 0, t_read = 0, t0;
    char qid[64] = "", seg[256] = "";
    int status;
    sqlite3 *raw = NULL;
    th_resp r;
    int locked = 0;
    long f0 = check_failures;

    if (th_product_create(s, P, "clinical", BUSY_DIM, "cosine", "", "") != 0 ||
        th_version_create(s, P, V0) != 0 || th_version_create(s, P, V1) != 0)
        return;
    rag = th_principal_create(s, "busy-rag", "consumer", "");
    rag2 = th_principal_create(s, "busy-rag2", "consumer", "");
    if (rag == NULL || rag2 == NULL ||
        th_grant(s, "busy-rag", P, NULL, "TREAT", "N", "", NULL) != 0)
        goto out;
    batch = batch_body("c", 0, 3, BUSY_DIM, 20);
    more = batch_body("m", 0, 2, BUSY_DIM, 20);
    grant = grant_body("busy-rag2", P);
    query = query_body(P, BUSY_DIM);
    if (!CHECK(batch && more && grant && query))
        goto out;
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/chunks", P, V0);
    post_text(s, path, s->admin_key, batch, &r);
    TH_CHECK_STATUS(&r, 200);
    th_resp_release(&r);
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/chunks", P, V1);
    post_text(s, path, s->admin_key, batch, &r);
    TH_CHECK_STATUS(&r, 200);
    th_resp_release(&r);
    if (th_publish(s, P, V0, NULL) != 0)
        goto out;

    chunks0 = version_chunks(s, P, V1, state, sizeof state);
    CHECK_EQ_INT(chunks0, 3);
    ev0 = audit_events(s);
    policy_state(s, &pv0, &gr0);

    /* Take the write lock as another process would. */
    snprintf(dbpath, sizeof dbpath, "%s/steward.db", s->data);
    if (!CHECKF(sqlite3_open_v2(dbpath, &raw, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK,
                "open %s: %s", dbpath, raw ? sqlite3_errmsg(raw) : "?"))
        goto out;
    sqlite3_busy_timeout(raw, 10000);
    if (!CHECKF(sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK,
                "BEGIN IMMEDIATE: %s", sqlite3_errmsg(raw)))
        goto out;
    locked = 1;

    /* reads go on under the lock (WAL) */
    CHECK_EQ_INT(version_chunks(s, P, V1, state, sizeof state), 3);
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/chunks", P, V1);
    expect_busy_503(s, "chunk batch", path, s->admin_key, more, "storage_unavailable", &t_batch);
    expect_busy_503(s, "grant", "/v1/grants", s->admin_key, grant, "storage_unavailable", &t_grant);
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/publish", P, V1);
    expect_busy_503(s, "publish", path, s->admin_key, NULL, "storage_unavailable", &t_pub);
    /* while locked, the failed publish left no folder behind */
    CHECKF(leftover_dirs(s, P, V1, left, sizeof left) == 0, "left behind under the lock: %s", left);

    /* A query's receipt is one append to the receipt journal: answered at once although the
     * trail's tables are locked. A read of the trail waits for it, then says it is behind. */
    t0 = now_s();
    post_text(s, "/v1/query", rag, query, &r);
    t_query = now_s() - t0;
    if (TH_CHECK_STATUS(&r, 200) && CHECK(th_str(r.json, "query_id") != NULL))
        snprintf(qid, sizeof qid, "%s", th_str(r.json, "query_id"));
    th_resp_release(&r);
    CHECKF(t_query < 2.0, "query answered after %.2f s under the lock", t_query);
    t0 = now_s();
    th_req(s, "GET", s->admin_key, NULL, &r, "/v1/audit/queries/%s", qid);
    t_read = now_s() - t0;
    TH_CHECK_ERROR(&r, 503, "audit_unavailable", NULL);
    th_resp_release(&r);
    CHECKF(t_read >= 4.0 && t_read < 60.0, "trail read answered after %.2f s", t_read);
    /* the process dies with that receipt in the journal only, in the middle of writing the
     * next one */
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    CHECKF(tear_journal(s, seg, sizeof seg) == 0, "no receipt journal segment to tear in %s",
           s->data);

    CHECK(sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    locked = 0;
    sqlite3_close(raw);
    raw = NULL;

    /* restarted, it writes the journal's receipt into the trail before anything else */
    if (!CHECK(th_resume(s) == 0))
        goto out;
    th_req(s, "GET", s->admin_key, NULL, &r, "/v1/audit/queries/%s", qid);
    if (TH_CHECK_STATUS(&r, 200))
        CHECK_EQ_INT(cJSON_GetArraySize(th_get(r.json, "results")), 3);
    th_resp_release(&r);

    /* nothing half-written */
    CHECK_EQ_INT(version_chunks(s, P, V1, state, sizeof state), chunks0);
    CHECK_EQ_STR(state, "draft");
    policy_state(s, &pv, &gr);
    CHECK_EQ_INT(pv, pv0);
    CHECK_EQ_INT(gr, gr0);
    CHECK_EQ_INT(audit_events(s), ev0 + 1); /* the query only */
    CHECKF(leftover_dirs(s, P, V1, left, sizeof left) == 0, "left behind: %s", left);

    /* and the same requests now succeed */
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/chunks", P, V1);
    post_text(s, path, s->admin_key, more, &r);
    if (TH_CHECK_STATUS(&r, 200))
        CHECK_EQ_INT((long)th_num(r.json, "accepted", -1), 2);
    th_resp_release(&r);
    post_text(s, "/v1/grants", s->admin_key, grant, &r);
    TH_CHECK_STATUS(&r, 201);
    th_resp_release(&r);
    CHECK(th_publish(s, P, V1, NULL) == 0);
    CHECK_EQ_INT(version_chunks(s, P, V1, state, sizeof state), chunks0 + 2);
    CHECK_EQ_STR(state, "published");
    post_text(s, "/v1/query", rag, query, &r);
    if (TH_CHECK_STATUS(&r, 200))
        CHECK_EQ_INT(cJSON_GetArraySize(th_get(r.json, "results")), 3);
    th_resp_release(&r);
    policy_state(s, &pv, &gr);
    CHECK_EQ_INT(gr, gr0 + 1);
    CHECK_EQ_INT(audit_events(s), ev0 + 5); /* query; ingest, grant, publish, query */
    printf("busy %s: store locked past the 5 s busy timeout: chunks %.1fs, grant %.1fs, publish "
           "%.1fs -> 503 storage_unavailable; query 200 in %.2fs (receipt journaled), trail "
           "read %.1fs -> 503 audit_unavailable; SIGKILL, a torn record in %s, restart: the "
           "receipt is in the trail; nothing else written; all succeed after the lock\n",
           verdict(f0), t_batch, t_grant, t_pub, t_query, t_read, seg);
out:
    if (locked)
        sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(raw);
    free(rag);
    free(rag2);
    free(batch);
    free(more);
    free(grant);
    free(query);
}

/* ---- (b) disk full ------------------------------------------------------------------------ */

static int is_storage_503(const th_resp *r)
{
    const char *code = th_str(r->json, "error.code");

    return r->status == 503 && code != NULL &&
           (strcmp(code, "storage_full") == 0 || strcmp(code, "storage_unavailable") == 0);
}

static void test_disk_full(th_server *s)
{
    static const char P[] = "full", V[] = "f1";
    char path[256], state[32], left[512], batch_code[64] = "", pub_code[64] = "";
    char *body = NULL, *big = NULL, *small = NULL, *query = NULL, *rag = NULL, *out = NULL;
    long ev0, f0 = check_failures;
    th_resp r;
    int rc;

    if (th_product_create(s, P, "clinical", FULL_DIM, "cosine", "", "") != 0 ||
        th_version_create(s, P, V) != 0)
        return;
    rag = th_principal_create(s, "full-rag", "consumer", "");
    if (rag == NULL || th_grant(s, "full-rag", P, NULL, "TREAT", "N", "", NULL) != 0)
        goto out;
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/chunks", P, V);
    for (size_t first = 0; first < FULL_BASE; first += 400) {
        body = batch_body("base", first, 400, FULL_DIM, 40);
        if (!CHECK(body != NULL))
            goto out;
        post_text(s, path, s->admin_key, body, &r);
        rc = TH_CHECK_STATUS(&r, 200);
        th_resp_release(&r);
        free(body);
        body = NULL;
        if (!rc)
            goto out;
    }
    big = batch_body("big", 0, FULL_BATCH, FULL_DIM, 1000);
    small = batch_body("small", 0, 1, FULL_DIM, 40);
    query = query_body(P, FULL_DIM);
    if (!CHECK(big != NULL && small != NULL && query != NULL))
        goto out;

    /* The same store, served by a process that cannot write past 1 MiB in any file. */
    th_halt(s);
    s->fsize_limit = FULL_LIMIT;
    rc = th_resume(s);
    s->fsize_limit = 0;
    if (rc != 0)
        goto out;
    ev0 = audit_events(s);

    /* a batch whose WAL frames cannot fit */
    post_text(s, path, s->admin_key, big, &r);
    CHECKF(is_storage_503(&r), "big batch on a full disk: HTTP %ld %s", r.status, r.body);
    TH_CHECK_ERROR(&r, 503, NULL, NULL);
    snprintf(batch_code, sizeof batch_code, "%s",
             th_str(r.json, "error.code") ? th_str(r.json, "error.code") : "?");
    th_resp_release(&r);
    CHECK_EQ_INT(version_chunks(s, P, V, state, sizeof state), FULL_BASE);
    CHECK_EQ_STR(state, "draft");
    CHECK_EQ_INT(audit_events(s), ev0);

    /* a publish whose vectors file (1.2 MB) cannot be written */
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/publish", P, V);
    post_text(s, path, s->admin_key, NULL, &r);
    CHECKF(is_storage_503(&r), "publish on a full disk: HTTP %ld %s", r.status, r.body);
    TH_CHECK_ERROR(&r, 503, NULL, NULL);
    snprintf(pub_code, sizeof pub_code, "%s",
             th_str(r.json, "error.code") ? th_str(r.json, "error.code") : "?");
    th_resp_release(&r);
    CHECK_EQ_INT(version_chunks(s, P, V, state, sizeof state), FULL_BASE);
    CHECK_EQ_STR(state, "draft");
    CHECKF(leftover_dirs(s, P, V, left, sizeof left) == 0,
           "failed publish left folders in versions/%s: %s", P, left);
    CHECK_EQ_INT(audit_events(s), ev0);
    /* a draft is not served: the failed publish made nothing queryable */
    post_text(s, "/v1/query", rag, query, &r);
    TH_CHECK_ERROR(&r, 404, "no_published_version", NULL);
    th_resp_release(&r);

    /* small writes still go through: the store is not wedged by the failed ones */
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/chunks", P, V);
    post_text(s, path, s->admin_key, small, &r);
    if (TH_CHECK_STATUS(&r, 200))
        CHECK_EQ_INT((long)th_num(r.json, "accepted", -1), 1);
    th_resp_release(&r);
    CHECK_EQ_INT(version_chunks(s, P, V, state, sizeof state), FULL_BASE + 1);

    /* The disk has room again (a server without the limit): the same requests succeed. */
    if (th_restart(s) != 0)
        goto out;
    post_text(s, path, s->admin_key, big, &r);
    if (TH_CHECK_STATUS(&r, 200))
        CHECK_EQ_INT((long)th_num(r.json, "accepted", -1), FULL_BATCH);
    th_resp_release(&r);
    if (CHECK(th_publish(s, P, V, NULL) == 0)) {
        CHECK_EQ_INT(version_chunks(s, P, V, state, sizeof state), FULL_BASE + 1 + FULL_BATCH);
        CHECK_EQ_STR(state, "published");
    }
    CHECKF(leftover_dirs(s, P, V, left, sizeof left) == 1 && strcmp(left, V) == 0,
           "after publish versions/%s holds: %s", P, left);
    post_text(s, "/v1/query", rag, query, &r);
    if (TH_CHECK_STATUS(&r, 200))
        CHECK_EQ_INT(cJSON_GetArraySize(th_get(r.json, "results")), 3);
    th_resp_release(&r);
    rc = th_run(s,
                (char *const[]){"verify-version", "--data", s->data, "--product", (char *)P,
                                "--version", (char *)V, NULL},
                &out);
    CHECKF(rc == 0 && out != NULL && strstr(out, "\"ok\":true") != NULL,
           "verify-version exit %d: %s", rc, out ? out : "(no output)");
    printf("disk full %s: RLIMIT_FSIZE 1 MiB: %d-chunk batch -> 503 %s, publish -> 503 %s; draft "
           "unchanged, no folder left; retried without the limit: both succeed, "
           "verify-version ok\n",
           verdict(f0), FULL_BATCH, batch_code, pub_code);
out:
    free(out);
    free(body);
    free(big);
    free(small);
    free(query);
    free(rag);
}

/* ---- (c) SIGTERM while a request is in flight --------------------------------------------- */

struct slow_upload {
    const th_server *s;
    const char *path;
    const char *body;
    size_t len, sent, pause_at;
    atomic_int paused; /* 1 once pause_at bytes are out */
    atomic_int go;     /* set by the main thread: send the rest */
    long status;
    char resp[4096];
    size_t resp_len;
    CURLcode cc;
};

static size_t slow_read(char *dst, size_t size, size_t nmemb, void *userp)
{
    struct slow_upload *u = userp;
    size_t n = size * nmemb;

    if (u->sent >= u->pause_at && !atomic_load(&u->go)) {
        atomic_store(&u->paused, 1);
        while (!atomic_load(&u->go))
            sleep_ms(5);
    }
    if (n > 16384)
        n = 16384;
    if (u->sent < u->pause_at && n > u->pause_at - u->sent)
        n = u->pause_at - u->sent;
    if (n > u->len - u->sent)
        n = u->len - u->sent;
    memcpy(dst, u->body + u->sent, n);
    u->sent += n;
    return n;
}

static size_t slow_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct slow_upload *u = userp;
    size_t n = size * nmemb, room = sizeof u->resp - 1 - u->resp_len;

    memcpy(u->resp + u->resp_len, data, n < room ? n : room);
    u->resp_len += n < room ? n : room;
    u->resp[u->resp_len] = '\0';
    return n;
}

static void *slow_thread(void *arg)
{
    struct slow_upload *u = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[512], auth[TH_KEY_MAX + 32];

    if (c == NULL) {
        atomic_store(&u->paused, 1);
        return NULL;
    }
    snprintf(url, sizeof url, "%s%s", u->s->base, u->path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", u->s->admin_key);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->len);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, slow_read);
    curl_easy_setopt(c, CURLOPT_READDATA, u);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, slow_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, u);
    u->cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &u->status);
    atomic_store(&u->paused, 1); /* in case it failed before the pause */
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    int found = 0;

    if (f == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        found = strstr(buf, needle) != NULL;
    }
    free(buf);
    fclose(f);
    return found;
}

/* 1 if a new TCP connection to port is accepted. */
static int can_connect(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void test_drain(th_server *s)
{
    static const char P[] = "drain", V[] = "d1";
    char path[256], logp[TH_PATH_MAX + 32], state[32];
    struct slow_upload u;
    pthread_t t;
    char *body;
    int status = 0, port = s->port, i, stop_seen = 0, refused = 0;
    long committed = -1;
    pid_t got = 0;
    double t_sig = 0, t_exit = 0;
    long f0 = check_failures;

    if (th_product_create(s, P, "clinical", DRAIN_DIM, "cosine", "", "") != 0 ||
        th_version_create(s, P, V) != 0)
        return;
    body = batch_body("d", 0, DRAIN_N, DRAIN_DIM, 200);
    if (!CHECK(body != NULL))
        return;
    snprintf(path, sizeof path, "/v1/products/%s/versions/%s/chunks", P, V);
    snprintf(logp, sizeof logp, "%s/server.log", s->root);
    memset(&u, 0, sizeof u);
    u.s = s;
    u.path = path;
    u.body = body;
    u.len = strlen(body);
    u.pause_at = u.len / 2;
    if (!CHECK(pthread_create(&t, NULL, slow_thread, &u) == 0)) {
        free(body);
        return;
    }
    for (i = 0; i < 6000 && !atomic_load(&u.paused); i++)
        sleep_ms(10);
    CHECKF(atomic_load(&u.paused) && u.sent == u.pause_at,
           "upload did not reach its pause (%zu of %zu bytes)", u.sent, u.len);
    sleep_ms(300); /* let the server read what was sent */

    t_sig = now_s();
    kill(s->pid, SIGTERM);
    for (i = 0; i < 2000 && !stop_seen; i++) {
        stop_seen = file_has(logp, "event=stop ");
        if (!stop_seen)
            sleep_ms(10);
    }
    CHECKF(stop_seen, "no event=stop in the log after SIGTERM");
    /* draining: the listening socket is closed at once, the request in flight goes on */
    for (i = 0; i < 200 && !refused; i++) {
        refused = !can_connect(port);
        if (!refused)
            sleep_ms(10);
    }
    CHECKF(refused, "the stopping server still accepts connections");
    CHECKF(waitpid(s->pid, &status, WNOHANG) == 0, "the server exited before the request ended");
    atomic_store(&u.go, 1);
    pthread_join(t, NULL);

    CHECKF(u.cc == CURLE_OK, "upload failed: %s", curl_easy_strerror(u.cc));
    CHECKF(u.status == 200 && strstr(u.resp, "\"accepted\":3000") != NULL,
           "batch in flight at SIGTERM: HTTP %ld %s", u.status, u.resp);
    for (i = 0; i < 3000 && got == 0; i++) {
        got = waitpid(s->pid, &status, WNOHANG);
        if (got == 0)
            sleep_ms(10);
    }
    t_exit = now_s();
    if (!CHECKF(got == s->pid, "the server did not exit within 30 s of SIGTERM")) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
    } else {
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "server ended with %s %d after draining", WIFEXITED(status) ? "exit" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    s->pid = 0; /* reaped here */
    CHECK(file_has(logp, "route=/v1/products/{p}/versions/{v}/chunks status=200"));
    CHECK(file_has(logp, "event=stopped"));

    /* the batch was committed */
    if (th_resume(s) == 0) {
        committed = version_chunks(s, P, V, state, sizeof state);
        CHECK_EQ_INT(committed, DRAIN_N);
        CHECK_EQ_STR(state, "draft");
    }
    printf("drain %s: SIGTERM with a %zu-byte batch half sent: new connections refused, batch "
           "HTTP %ld, exit status %d %.1fs after the signal, %ld chunks committed of %d\n",
           verdict(f0), u.len, u.status, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
           t_exit - t_sig, committed, DRAIN_N);
    free(body);
}

int main(int argc, char **argv)
{
    const char *bin = th_steward_bin(argc, argv);
    th_server s;

    setvbuf(stdout, NULL, _IOLBF, 0);
    rng_state ^= th_seed_from_env("STW_TEST_SEED");
    if (th_start(&s, bin) == 0) {
        test_busy(&s);
        test_disk_full(&s);
        test_drain(&s);
    }
    th_stop(&s);
    return check_summary("faults");
}
