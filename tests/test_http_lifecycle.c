/* test_http_lifecycle.c - versions over their life, restarts and audit receipts, over HTTP.
 *
 *  - publish is atomic: a draft is never served; after publish every chunk is, ranked exactly
 *    as a brute-force scan of the vectors this test sent;
 *  - a published version refuses writes (409);
 *  - a newer version becomes latest, pinned and as_of rules still resolve; retiring the latest
 *    moves latest back, and a rule resolving to the retired version gives 410;
 *  - the server restarted on the same data folder answers the same queries identically;
 *  - GET /v1/audit/queries/{id}: an auditor gets the receipt (principal, purpose, policy
 *    version, returned chunk ids in rank order, a SHA-256 of the vector and not the vector);
 *    a consumer gets 403;
 *  - GET /healthz is 200 {"status":"ok"} without a key;
 *  - GET /metrics: queries, refusals (by reason), a chunk batch and a publish move their
 *    counters and histograms by exactly what was done; histograms are cumulative with +Inf
 *    equal to _count; no principal name, subject or chunk text appears.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "harness.h"

#define DIM 8
#define N1  40 /* chunks in v1 */
#define N2  25 /* chunks in v2 */

#define QID_MAX 128

static th_server srv;
static char *consumer_key, *auditor_key;

struct lc_chunk {
    char id[32];
    float v[DIM];
};
static struct lc_chunk v1[N1], v2[N2];

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static cJSON *query_body(const float *vec, size_t k, const char *purpose, cJSON *product)
{
    cJSON *q = cJSON_CreateObject();
    cJSON *prods = cJSON_CreateArray();

    cJSON_AddItemToObject(q, "vector", th_vec_array(vec, DIM));
    cJSON_AddNumberToObject(q, "k", (double)k);
    cJSON_AddStringToObject(q, "purpose", purpose);
    cJSON_AddItemToArray(prods, product);
    cJSON_AddItemToObject(q, "products", prods);
    return q;
}

static long query(const char *key, const float *vec, size_t k, const char *product_rule, th_resp *r)
{
    cJSON *q = query_body(vec, k, "TREAT", cJSON_CreateString(product_rule));
    long st = th_req(&srv, "POST", key, q, r, "/v1/query");
    cJSON_Delete(q);
    return st;
}

static long query_as_of(const float *vec, const char *as_of, th_resp *r)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "product", "lc-notes");
    cJSON_AddStringToObject(p, "as_of", as_of);
    cJSON *q = query_body(vec, 100, "TREAT", p);
    long st = th_req(&srv, "POST", consumer_key, q, r, "/v1/query");
    cJSON_Delete(q);
    return st;
}

static int add_chunks(const char *version, const struct lc_chunk *cs, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    long accepted = -1;
    int rc;

    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, th_chunk_new(cs[i].id, "Plan: follow up.", cs[i].v, DIM, "N", "",
                                               "ehr", "doc-1", "plan", "patient-0007",
                                               "2026-05-05T10:00:00Z"));
    rc = th_chunks_add(&srv, "lc-notes", version, arr, &accepted, NULL);
    if (rc == 0)
        CHECK_EQ_INT(accepted, (long)n);
    cJSON_Delete(arr);
    return rc;
}

/* Checks that a 200 answer holds exactly the chunks of `cs` ranked by cosine (all of them, or
 * the top k), from `version`. */
static void check_ranking(const char *file, int line, const th_resp *r, const float *q, size_t k,
                          const struct lc_chunk *cs, size_t n, const char *version)
{
    size_t want = k < n ? k : n;
    const cJSON *res = th_get(r->json, "results");
    double prev = 2.0;
    size_t i = 0;
    const cJSON *it;
    double best_excluded = -2.0;
    char *seen;

    if (!th_check_status(file, line, r, 200))
        return;
    check_eq_int(file, line, "results", "min(k, chunks)", cJSON_GetArraySize(res), (long)want);
    check_boolf(file, line, "complete", cJSON_IsTrue(th_get(r->json, "complete")),
                "complete is not true: %.300s", r->body);
    seen = calloc(n, 1);
    cJSON_ArrayForEach(it, res)
    {
        const char *id = th_str(it, "chunk_id");
        size_t j;
        for (j = 0; j < n; j++)
            if (id && strcmp(id, cs[j].id) == 0)
                break;
        if (!check_boolf(file, line, "known chunk", j < n, "result %zu '%s' is not in %s", i,
                         id ? id : "(null)", version))
            break;
        check_boolf(file, line, "no duplicate", !seen[j], "'%s' returned twice", id);
        seen[j] = 1;
        check_eq_str(file, line, "version", version, th_str(it, "version"), version);
        check_eq_int(file, line, "rank", "i+1", (long)th_num(it, "rank", -1), (long)(i + 1));
        double want_score = th_score("cosine", q, cs[j].v, DIM);
        check_near(file, line, "score", "brute force", th_num(it, "score", 99), want_score, 1e-4);
        check_boolf(file, line, "best first", want_score <= prev + 1e-5,
                    "rank %zu (%s, %.6f) scores above rank %zu (%.6f)", i + 1, id, want_score, i,
                    prev);
        prev = want_score;
        i++;
    }
    /* nothing left out scores better than the last result (ties within 1e-5 allowed) */
    for (size_t j = 0; j < n; j++)
        if (!seen[j]) {
            double s = th_score("cosine", q, cs[j].v, DIM);
            if (s > best_excluded)
                best_excluded = s;
        }
    if (i == want && i > 0)
        check_boolf(file, line, "top k", best_excluded <= prev + 1e-5,
                    "a chunk scoring %.6f was left out while %.6f was returned", best_excluded,
                    prev);
    free(seen);
}
#define CHECK_RANKING(r, q, k, cs, n, version)                                                     \
    check_ranking(__FILE__, __LINE__, r, q, k, cs, n, version)

static int is_rfc3339(const char *s)
{
    /* "YYYY-MM-DDTHH:MM:SS" then optional fraction then Z */
    if (s == NULL || strlen(s) < 20)
        return 0;
    for (int i = 0; i < 19; i++) {
        char c = s[i];
        int digit = c >= '0' && c <= '9';
        if ((i == 4 || i == 7)     ? c != '-'
            : i == 10              ? c != 'T'
            : (i == 13 || i == 16) ? c != ':'
                                   : !digit)
            return 0;
    }
    return s[strlen(s) - 1] == 'Z';
}

static void test_health(void)
{
    th_resp r;
    th_request(&srv, "GET", "/healthz", NULL, NULL, 0, &r);
    TH_CHECK_STATUS(&r, 200);
    CHECK_EQ_STR(th_str(r.json, "status"), "ok");
    th_resp_release(&r);
}

static char pub1[40], pub2[40];

static void test_publish_atomic(void)
{
    th_resp r;
    float q[DIM];

    for (int i = 0; i < DIM; i++)
        q[i] = rnd();
    /* The draft reports what it holds so far. */
    th_request(&srv, "GET", "/v1/products/lc-notes/versions/v1", srv.admin_key, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200)) {
        CHECK_EQ_STR(th_str(r.json, "state"), "draft");
        CHECKF((long)th_num(r.json, "chunks", -1) == N1,
               "a draft holding %d chunks reports \"chunks\": %.0f", N1,
               th_num(r.json, "chunks", -1));
    }
    th_resp_release(&r);
    /* Only a draft: not served, neither as latest nor pinned. */
    query(consumer_key, q, 10, "lc-notes", &r);
    TH_CHECK_ERROR(&r, 404, NULL, NULL);
    th_resp_release(&r);
    query(consumer_key, q, 10, "lc-notes@v1", &r);
    CHECKF(r.status == 404 || r.status == 409,
           "a pinned query on a draft must not be served; got %ld %.300s", r.status, r.body);
    TH_CHECK_ERROR(&r, r.status == 409 ? 409 : 404, NULL, NULL);
    th_resp_release(&r);

    th_request(&srv, "POST", "/v1/products/lc-notes/versions/v1/publish", srv.admin_key, NULL, 0,
               &r);
    if (TH_CHECK_STATUS(&r, 200)) {
        CHECK_EQ_STR(th_str(r.json, "state"), "published");
        CHECK_EQ_INT((long)th_num(r.json, "chunks", -1), N1);
        CHECKF(th_is_sha256(th_str(r.json, "content_hash"), 0), "content_hash: %s", r.body);
        CHECKF(is_rfc3339(th_str(r.json, "published_at")), "published_at: %s", r.body);
        snprintf(pub1, sizeof pub1, "%s", nz(th_str(r.json, "published_at")));
    }
    th_resp_release(&r);

    /* After publish, every chunk is visible, ranked by brute force. */
    query(consumer_key, q, 1000, "lc-notes", &r);
    CHECK_RANKING(&r, q, 1000, v1, N1, "v1");
    {
        const cJSON *vs = th_get(r.json, "versions");
        CHECK_EQ_INT(cJSON_GetArraySize(vs), 1);
        CHECK_EQ_STR(th_str(cJSON_GetArrayItem(vs, 0), "product"), "lc-notes");
        CHECK_EQ_STR(th_str(cJSON_GetArrayItem(vs, 0), "version"), "v1");
    }
    th_resp_release(&r);
    query(consumer_key, q, 7, "lc-notes@v1", &r);
    CHECK_RANKING(&r, q, 7, v1, N1, "v1");
    th_resp_release(&r);

    th_request(&srv, "GET", "/v1/products/lc-notes/versions/v1", srv.admin_key, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200)) {
        CHECK_EQ_STR(th_str(r.json, "state"), "published");
        CHECK_EQ_INT((long)th_num(r.json, "chunks", -1), N1);
    }
    th_resp_release(&r);
}

static void test_published_refuses_writes(void)
{
    th_resp r;
    cJSON *b = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    float q[DIM] = {1, 0, 0, 0, 0, 0, 0, 0};

    cJSON_AddItemToArray(arr, th_chunk_new("late", "x", v1[0].v, DIM, "N", "", "ehr", "doc-1",
                                           "plan", "patient-0007", NULL));
    cJSON_AddItemToObject(b, "chunks", arr);
    th_req(&srv, "POST", srv.admin_key, b, &r, "/v1/products/lc-notes/versions/v1/chunks");
    TH_CHECK_ERROR(&r, 409, NULL, NULL);
    th_resp_release(&r);
    cJSON_Delete(b);
    /* and the version still holds exactly its chunks */
    query(consumer_key, q, 1000, "lc-notes", &r);
    CHECK_RANKING(&r, q, 1000, v1, N1, "v1");
    th_resp_release(&r);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* A reader thread querying "lc-notes" while v2 is published: every answer must be all of v1
 * or all of v2, never a mix or a partial version. */
struct reader {
    th_server view; /* a copy of srv with its own curl handle */
    float q[DIM];
    atomic_int stop;
    atomic_long done;
    long n_v1, n_v2, n_bad;
    char first_bad[512];
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    cJSON *body = query_body(rd->q, 1000, "TREAT", cJSON_CreateString("lc-notes"));
    char *text = cJSON_PrintUnformatted(body);

    while (!atomic_load(&rd->stop)) {
        th_resp r;
        int n1 = 0, n2 = 0, other = 0, total = 0;
        const cJSON *it;
        th_request(&rd->view, "POST", "/v1/query", consumer_key, text, strlen(text), &r);
        cJSON_ArrayForEach(it, th_get(r.json, "results"))
        {
            const char *v = th_str(it, "version");
            total++;
            if (v && !strcmp(v, "v1"))
                n1++;
            else if (v && !strcmp(v, "v2"))
                n2++;
            else
                other++;
        }
        if (r.status == 200 && other == 0 && n1 == N1 && total == N1)
            rd->n_v1++;
        else if (r.status == 200 && other == 0 && n2 == N2 && total == N2)
            rd->n_v2++;
        else if (rd->n_bad++ == 0)
            snprintf(rd->first_bad, sizeof rd->first_bad,
                     "status %ld, %d results (%d v1, %d v2, %d other): %.300s", r.status, total, n1,
                     n2, other, r.body ? r.body : "");
        th_resp_release(&r);
        atomic_fetch_add(&rd->done, 1);
    }
    cJSON_free(text);
    cJSON_Delete(body);
    return NULL;
}

static void wait_for(struct reader *rd, long at_least)
{
    for (int i = 0; i < 6000 && atomic_load(&rd->done) < at_least; i++)
        sleep_ms(5);
}

static int publish_under_load(char *published_at)
{
    struct reader rd;
    pthread_t tid;
    long before;
    int rc;

    memset(&rd, 0, sizeof rd);
    rd.view = srv;
    rd.view.curl = curl_easy_init();
    for (int i = 0; i < DIM; i++)
        rd.q[i] = rnd();
    if (!CHECK(rd.view.curl != NULL))
        return -1;
    if (!CHECK(pthread_create(&tid, NULL, reader_main, &rd) == 0)) {
        curl_easy_cleanup(rd.view.curl);
        return -1;
    }
    wait_for(&rd, 20);
    before = atomic_load(&rd.done);
    rc = th_publish(&srv, "lc-notes", "v2", published_at);
    wait_for(&rd, atomic_load(&rd.done) + 20);
    atomic_store(&rd.stop, 1);
    pthread_join(tid, NULL);
    curl_easy_cleanup(rd.view.curl);
    printf("lifecycle: %ld queries around publish: %ld saw all of v1, %ld all of v2, %ld other "
           "(%ld before publish was called)\n",
           atomic_load(&rd.done), rd.n_v1, rd.n_v2, rd.n_bad, before);
    CHECKF(rd.n_bad == 0,
           "%ld answers during publish were neither all of v1 nor all of v2; first: %s", rd.n_bad,
           rd.first_bad);
    CHECKF(rd.n_v1 > 0 && rd.n_v2 > 0, "the reader saw %ld v1 and %ld v2 answers", rd.n_v1,
           rd.n_v2);
    return rc;
}

static void test_versions_and_retire(void)
{
    th_resp r;
    float q[DIM];

    for (int i = 0; i < DIM; i++)
        q[i] = rnd();
    if (th_version_create(&srv, "lc-notes", "v2") != 0 || add_chunks("v2", v2, N2) != 0)
        return;
    /* v2 is a draft: latest is still v1 */
    query(consumer_key, q, 1000, "lc-notes", &r);
    CHECK_RANKING(&r, q, 1000, v1, N1, "v1");
    th_resp_release(&r);

    sleep_ms(20); /* distinct published_at for the as_of checks */
    if (publish_under_load(pub2) != 0)
        return;
    query(consumer_key, q, 1000, "lc-notes", &r);
    CHECK_RANKING(&r, q, 1000, v2, N2, "v2");
    th_resp_release(&r);
    query(consumer_key, q, 1000, "lc-notes@v1", &r);
    CHECK_RANKING(&r, q, 1000, v1, N1, "v1");
    th_resp_release(&r);

    /* as_of: the version that was latest at T */
    CHECKF(is_rfc3339(pub1) && is_rfc3339(pub2), "published_at '%s' '%s'", pub1, pub2);
    query_as_of(q, pub1, &r);
    CHECK_RANKING(&r, q, 100, v1, N1, "v1");
    th_resp_release(&r);
    query_as_of(q, pub2, &r);
    CHECK_RANKING(&r, q, 100, v2, N2, "v2");
    th_resp_release(&r);
    query_as_of(q, "2100-01-01T00:00:00Z", &r);
    CHECK_RANKING(&r, q, 100, v2, N2, "v2");
    th_resp_release(&r);
    query_as_of(q, "2000-01-01T00:00:00Z", &r); /* nothing was published then */
    TH_CHECK_ERROR(&r, 404, NULL, NULL);
    th_resp_release(&r);

    /* retire the latest: latest moves back to v1; rules resolving to v2 give 410 */
    if (th_retire(&srv, "lc-notes", "v2") != 0)
        return;
    query(consumer_key, q, 1000, "lc-notes", &r);
    CHECK_RANKING(&r, q, 1000, v1, N1, "v1");
    th_resp_release(&r);
    query(consumer_key, q, 10, "lc-notes@v2", &r);
    TH_CHECK_ERROR(&r, 410, NULL, NULL);
    th_resp_release(&r);
    query_as_of(q, pub2, &r);
    TH_CHECK_ERROR(&r, 410, NULL, NULL);
    th_resp_release(&r);
    th_request(&srv, "GET", "/v1/products/lc-notes/versions/v2", srv.admin_key, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200))
        CHECK_EQ_STR(th_str(r.json, "state"), "retired");
    th_resp_release(&r);
    /* a retired version takes no writes either */
    {
        cJSON *b = cJSON_CreateObject();
        cJSON *arr = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, th_chunk_new("late2", "x", v1[0].v, DIM, "N", "", "ehr", "doc-1",
                                               "plan", "patient-0007", NULL));
        cJSON_AddItemToObject(b, "chunks", arr);
        th_req(&srv, "POST", srv.admin_key, b, &r, "/v1/products/lc-notes/versions/v2/chunks");
        TH_CHECK_ERROR(&r, 409, NULL, NULL);
        th_resp_release(&r);
        cJSON_Delete(b);
    }
}

/* The first array member whose elements are objects carrying "chunk_id". Borrowed. */
static const cJSON *receipt_chunks(const cJSON *receipt)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, receipt)
    {
        if (cJSON_IsArray(it) && cJSON_GetArraySize(it) > 0 &&
            th_str(cJSON_GetArrayItem(it, 0), "chunk_id") != NULL)
            return it;
    }
    return NULL;
}

/* The receipt's SHA-256 of the query vector: a string member whose name mentions "vector". */
static const char *receipt_vector_hash(const cJSON *receipt)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, receipt)
    {
        if (it->string && strstr(it->string, "vector") && cJSON_IsString(it))
            return it->valuestring;
    }
    return NULL;
}

/* 1 if any numeric array anywhere in json equals vec. */
static int contains_vector(const cJSON *json, const float *vec, size_t dim)
{
    const cJSON *it;
    if (cJSON_IsArray(json) && (size_t)cJSON_GetArraySize(json) == dim) {
        size_t i = 0, same = 0;
        cJSON_ArrayForEach(it, json)
        {
            if (cJSON_IsNumber(it) && (float)it->valuedouble == vec[i])
                same++;
            i++;
        }
        if (same == dim)
            return 1;
    }
    cJSON_ArrayForEach(it, json)
    {
        if (contains_vector(it, vec, dim))
            return 1;
    }
    return 0;
}

static char first_qid[QID_MAX];

static void test_audit_receipt(void)
{
    th_resp r, a;
    float q[DIM], q2[DIM];
    char qid[QID_MAX], hash1[128] = "";

    for (int i = 0; i < DIM; i++) {
        q[i] = rnd();
        q2[i] = rnd();
    }
    {
        /* with a narrowing filter, which the receipt must record */
        cJSON *qb = query_body(q, 5, "TREAT", cJSON_CreateString("lc-notes"));
        cJSON *f = cJSON_AddObjectToObject(qb, "filter");
        cJSON_AddStringToObject(f, "subject", "patient-0007");
        th_req(&srv, "POST", consumer_key, qb, &r, "/v1/query");
        cJSON_Delete(qb);
    }
    if (!TH_CHECK_STATUS(&r, 200)) {
        th_resp_release(&r);
        return;
    }
    snprintf(qid, sizeof qid, "%s", nz(th_str(r.json, "query_id")));
    snprintf(first_qid, sizeof first_qid, "%s", qid);
    CHECKF(qid[0] != '\0', "no query_id: %.300s", r.body);

    th_req(&srv, "GET", auditor_key, NULL, &a, "/v1/audit/queries/%s", qid);
    if (TH_CHECK_STATUS(&a, 200)) {
        const cJSON *chunks = receipt_chunks(a.json);
        const cJSON *res = th_get(r.json, "results");
        const char *h = receipt_vector_hash(a.json);

        CHECK_EQ_STR(th_str(a.json, "principal"), "lc-consumer");
        CHECK_EQ_STR(th_str(a.json, "query_id"), qid);
        CHECK_EQ_INT((long)th_num(a.json, "k", -1), 5);
        CHECK_EQ_STR(th_str(a.json, "filter.subject"), "patient-0007");
        {
            const cJSON *rv = th_get(a.json, "versions");
            CHECK_EQ_INT(cJSON_GetArraySize(rv), 1);
            CHECK_EQ_STR(th_str(cJSON_GetArrayItem(rv, 0), "product"), "lc-notes");
            CHECK_EQ_STR(th_str(cJSON_GetArrayItem(rv, 0), "version"), "v1");
        }
        CHECK_EQ_STR(th_str(a.json, "purpose"), "TREAT");
        CHECK_EQ_INT((long)th_num(a.json, "policy_version", -1),
                     (long)th_num(r.json, "policy_version", -2));
        CHECKF(chunks != NULL, "no list of returned chunks in the receipt: %.600s", a.body);
        CHECK_EQ_INT(cJSON_GetArraySize(chunks), cJSON_GetArraySize(res));
        for (int i = 0; chunks && i < cJSON_GetArraySize(res); i++) {
            const cJSON *rc = cJSON_GetArrayItem(chunks, i), *rr = cJSON_GetArrayItem(res, i);
            CHECK_EQ_STR(th_str(rc, "chunk_id"), th_str(rr, "chunk_id"));
            CHECK_EQ_STR(th_str(rc, "product"), "lc-notes");
            CHECK_EQ_STR(th_str(rc, "version"), th_str(rr, "version"));
            if (th_get(rc, "rank"))
                CHECK_EQ_INT((long)th_num(rc, "rank", -1), i + 1);
            if (th_get(rc, "score"))
                CHECK_NEAR(th_num(rc, "score", 99), th_num(rr, "score", -99), 1e-6);
            CHECK_EQ_STR(th_str(rc, "subject"), "patient-0007");
            CHECK_EQ_STR(th_str(rc, "document_id"), "doc-1");
            CHECK_EQ_STR(th_str(rc, "source_system"), "ehr");
        }
        CHECKF(th_is_sha256(h, 1), "no SHA-256 of the query vector in the receipt: %.600s", a.body);
        snprintf(hash1, sizeof hash1, "%s", h ? h : "");
        CHECKF(!contains_vector(a.json, q, DIM), "the receipt holds the query vector itself");
    }
    th_resp_release(&a);
    th_resp_release(&r);

    /* same vector -> same hash; another vector -> another hash */
    for (int round = 0; round < 2; round++) {
        query(consumer_key, round == 0 ? q : q2, 3, "lc-notes", &r);
        if (TH_CHECK_STATUS(&r, 200)) {
            th_req(&srv, "GET", auditor_key, NULL, &a, "/v1/audit/queries/%s",
                   nz(th_str(r.json, "query_id")));
            if (TH_CHECK_STATUS(&a, 200)) {
                const char *h = receipt_vector_hash(a.json);
                if (round == 0)
                    CHECK_EQ_STR(h, hash1);
                else
                    CHECKF(h && strcmp(h, hash1) != 0,
                           "two different vectors have the same hash %s", hash1);
            }
            th_resp_release(&a);
        }
        th_resp_release(&r);
    }

    /* a consumer may not read receipts, not even its own; an admin may */
    th_req(&srv, "GET", consumer_key, NULL, &a, "/v1/audit/queries/%s", qid);
    TH_CHECK_ERROR(&a, 403, NULL, NULL);
    th_resp_release(&a);
    th_req(&srv, "GET", srv.admin_key, NULL, &a, "/v1/audit/queries/%s", qid);
    TH_CHECK_STATUS(&a, 200);
    th_resp_release(&a);

    th_request(&srv, "GET", "/v1/audit/verify", auditor_key, NULL, 0, &a);
    if (TH_CHECK_STATUS(&a, 200))
        CHECKF(cJSON_IsTrue(th_get(a.json, "ok")), "audit chain broken: %.300s", a.body);
    th_resp_release(&a);

    /* the accounting of disclosures for the subject names that query; another subject's not */
    th_request(&srv, "GET", "/v1/audit/disclosures?subject=patient-0007", auditor_key, NULL, 0, &a);
    if (TH_CHECK_STATUS(&a, 200))
        CHECKF(a.body && strstr(a.body, qid) != NULL,
               "disclosures for patient-0007 do not mention query %s: %.400s", qid, a.body);
    th_resp_release(&a);
    th_request(&srv, "GET", "/v1/audit/disclosures?subject=patient-9999", auditor_key, NULL, 0, &a);
    if (TH_CHECK_STATUS(&a, 200))
        CHECKF(a.body && strstr(a.body, qid) == NULL,
               "disclosures for an unrelated subject mention query %s", qid);
    th_resp_release(&a);

    /* a refused query is an audit event too */
    {
        cJSON *qb = query_body(q, 3, "HMARKT", cJSON_CreateString("lc-notes"));
        th_req(&srv, "POST", consumer_key, qb, &r, "/v1/query");
        TH_CHECK_ERROR(&r, 403, "not_entitled", "lc-notes");
        th_resp_release(&r);
        cJSON_Delete(qb);
    }
    th_request(&srv, "GET", "/v1/audit/events?type=query_denied&limit=50", auditor_key, NULL, 0,
               &a);
    if (TH_CHECK_STATUS(&a, 200)) {
        const cJSON *evs = th_get(a.json, "events"), *it;
        int n = 0;
        cJSON_ArrayForEach(it, evs)
        {
            CHECK_EQ_STR(th_str(it, "type"), "query_denied");
            n++;
        }
        CHECKF(n >= 1, "no query_denied event after a refused query: %.300s", a.body);
    }
    th_resp_release(&a);
    th_request(&srv, "GET", "/v1/audit/events?limit=5", consumer_key, NULL, 0, &a);
    TH_CHECK_ERROR(&a, 403, NULL, NULL);
    th_resp_release(&a);
}

#define NQ 12
static void test_restart(void)
{
    float qs[NQ][DIM];
    char *before[NQ] = {0};
    th_resp r;

    for (int i = 0; i < NQ; i++)
        for (int d = 0; d < DIM; d++)
            qs[i][d] = rnd();
    for (int i = 0; i < NQ; i++) {
        query(consumer_key, qs[i], 1 + (size_t)i * 3, i % 3 == 2 ? "lc-notes@v1" : "lc-notes", &r);
        if (TH_CHECK_STATUS(&r, 200))
            before[i] = cJSON_PrintUnformatted(th_get(r.json, "results"));
        th_resp_release(&r);
    }
    if (th_restart(&srv) != 0)
        goto out;
    test_health();
    for (int i = 0; i < NQ; i++) {
        query(consumer_key, qs[i], 1 + (size_t)i * 3, i % 3 == 2 ? "lc-notes@v1" : "lc-notes", &r);
        if (TH_CHECK_STATUS(&r, 200)) {
            char *after = cJSON_PrintUnformatted(th_get(r.json, "results"));
            CHECKF(before[i] && after && strcmp(before[i], after) == 0,
                   "query %d differs after restart:\nbefore %s\nafter  %s", i,
                   before[i] ? before[i] : "", after ? after : "");
            cJSON_free(after);
        }
        th_resp_release(&r);
    }
    /* state survived: retired stays retired; receipts stay readable */
    query(consumer_key, qs[0], 10, "lc-notes@v2", &r);
    TH_CHECK_ERROR(&r, 410, NULL, NULL);
    th_resp_release(&r);
    if (first_qid[0]) {
        th_req(&srv, "GET", auditor_key, NULL, &r, "/v1/audit/queries/%s", first_qid);
        TH_CHECK_STATUS(&r, 200);
        th_resp_release(&r);
    }
    th_request(&srv, "GET", "/v1/audit/verify", auditor_key, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200))
        CHECKF(cJSON_IsTrue(th_get(r.json, "ok")), "audit chain broken: %.300s", r.body);
    th_resp_release(&r);
out:
    for (int i = 0; i < NQ; i++)
        cJSON_free(before[i]);
}

/* ---- GET /metrics ------------------------------------------------------------------------ */

/* The value of one series ("name" or "name{labels}") in Prometheus text, or -1. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

static char *metrics_text(void)
{
    th_resp r;
    char *text = NULL;
    th_request(&srv, "GET", "/metrics", NULL, NULL, 0, &r);
    if (TH_CHECK_STATUS(&r, 200))
        text = strdup(r.body);
    th_resp_release(&r);
    return text;
}

/* Every histogram is well formed: buckets never decrease and +Inf equals _count. */
static void check_histograms(const char *text)
{
    char prev_name[200] = "";
    double prev = 0;
    int nhist = 0;
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *b = strstr(p, "_bucket{");
        const char *eol = strchr(p, '\n');
        if (b != NULL && (eol == NULL || b < eol) && p[0] != '#') {
            const char *le = strstr(p, "le=\"");
            char name[200];
            double v = strtod(strchr(p, ' ') + 1, NULL);
            /* the series without its le label: name{other labels */
            snprintf(name, sizeof name, "%.*s", (int)(le - p), p);
            if (strcmp(name, prev_name) == 0)
                CHECKF(v >= prev, "%s: bucket %.30s below the one before", name, le);
            if (strncmp(le, "le=\"+Inf\"", 9) == 0) {
                char count[240];
                size_t base = (size_t)(b - p);
                const char *labels = b + 8; /* after "_bucket{" */
                size_t nl = (size_t)(le - labels);
                if (nl > 0)
                    snprintf(count, sizeof count, "%.*s_count{%.*s}", (int)base, p,
                             (int)nl - 1, labels);
                else
                    snprintf(count, sizeof count, "%.*s_count", (int)base, p);
                CHECKF(metric(text, count) == v, "%s is %.0f, +Inf bucket %.0f", count,
                       metric(text, count), v);
                nhist++;
            }
            snprintf(prev_name, sizeof prev_name, "%s", name);
            prev = v;
        }
        p = eol != NULL ? eol + 1 : NULL;
    }
    CHECKF(nhist >= 5, "only %d histograms in /metrics", nhist);
}

/* Queries, refusals, a chunk batch and a publish move the counters by exactly what was done. */
static void test_metrics(void)
{
    enum { NQM = 7 };
    char *before = metrics_text(), *after = NULL;
    double q0 = 0, q1 = 0;
    struct lc_chunk extra[3];
    float q[DIM];
    th_resp r;

    if (before == NULL)
        return;
    for (int i = 0; i < DIM; i++)
        q[i] = rnd();
    for (int i = 0; i < NQM; i++) {
        query(consumer_key, q, 5, "lc-notes@v1", &r);
        TH_CHECK_STATUS(&r, 200);
        th_resp_release(&r);
    }
    query("stw_0000000000000000_bad", q, 5, "lc-notes", &r); /* 401 invalid_api_key */
    th_resp_release(&r);
    query(NULL, q, 5, "lc-notes", &r); /* 401 missing_api_key */
    th_resp_release(&r);
    query(auditor_key, q, 5, "lc-notes", &r); /* 403: an auditor may not query */
    th_resp_release(&r);
    for (int i = 0; i < 3; i++) {
        snprintf(extra[i].id, sizeof extra[i].id, "lc3-%02d", i);
        for (int d = 0; d < DIM; d++)
            extra[i].v[d] = rnd();
    }
    if (th_version_create(&srv, "lc-notes", "v3") || add_chunks("v3", extra, 3) ||
        th_publish(&srv, "lc-notes", "v3", NULL))
        goto out;
    after = metrics_text();
    if (after == NULL)
        goto out;
    for (size_t s = 0; s < 9; s++) {
        static const char *const st[] = {"exact",      "sq8",      "sq1",      "cells", "hnsw",
                                         "hnsw+exact", "hnsw+sq8", "hnsw+sq1", "mixed"};
        char series[96];
        snprintf(series, sizeof series, "steward_query_duration_seconds_count{strategy=\"%s\"}",
                 st[s]);
        q0 += metric(before, series);
        q1 += metric(after, series);
    }
    CHECKF(q1 - q0 == NQM, "query histograms grew by %.0f, %d queries answered", q1 - q0, NQM);
    {
        static const struct {
            const char *series;
            double grew;
        } moved[] = {
            {"steward_allowset_share_count", NQM},
            {"steward_audit_receipt_seconds_count", NQM},
            {"steward_denials_total{reason=\"invalid_api_key\"}", 1},
            {"steward_denials_total{reason=\"missing_api_key\"}", 1},
            {"steward_denials_total{reason=\"forbidden\"}", 1},
            {"steward_ingest_chunks_total{outcome=\"accepted\"}", 3},
            {"steward_publishes_total", 1},
        };
        for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
            double d = metric(after, moved[i].series) - metric(before, moved[i].series);
            CHECKF(d == moved[i].grew, "%s grew by %.0f, expected %.0f", moved[i].series, d,
                   moved[i].grew);
        }
    }
    CHECK(metric(after, "steward_query_incomplete_total") == 0);
    check_histograms(after);
    /* no PHI, no principal names, no chunk text: only routes, statuses, strategies, reasons */
    CHECK(strstr(after, "lc-consumer") == NULL && strstr(after, "follow up") == NULL &&
          strstr(after, "patient-") == NULL);
out:
    free(before);
    free(after);
}

int main(int argc, char **argv)
{
    for (int i = 0; i < N1; i++) {
        snprintf(v1[i].id, sizeof v1[i].id, "lc-%02d", i);
        for (int d = 0; d < DIM; d++)
            v1[i].v[d] = rnd();
    }
    for (int i = 0; i < N2; i++) {
        /* v2 reuses some of v1's ids with other content: versions are independent */
        snprintf(v2[i].id, sizeof v2[i].id, i < 10 ? "lc-%02d" : "lc2-%02d", i);
        for (int d = 0; d < DIM; d++)
            v2[i].v[d] = rnd();
    }
    if (th_start(&srv, th_steward_bin(argc, argv)) != 0)
        goto out;
    test_health();
    if (th_product_create(&srv, "lc-notes", "clinical", DIM, "cosine", "PSY,HIV,SUD,ETH", "") ||
        th_version_create(&srv, "lc-notes", "v1"))
        goto out;
    if (add_chunks("v1", v1, N1 / 2) || add_chunks("v1", v1 + N1 / 2, N1 - N1 / 2))
        goto out;
    consumer_key = th_principal_create(&srv, "lc-consumer", "consumer", "");
    auditor_key = th_principal_create(&srv, "lc-auditor", "auditor", "");
    if (!consumer_key || !auditor_key ||
        th_grant(&srv, "lc-consumer", "lc-notes", NULL, "TREAT", "V", "", NULL))
        goto out;
    test_publish_atomic();
    test_published_refuses_writes();
    test_versions_and_retire();
    test_audit_receipt();
    test_restart();
    test_metrics();
out:
    th_stop(&srv);
    free(consumer_key);
    free(auditor_key);
    return check_summary("http_lifecycle");
}
